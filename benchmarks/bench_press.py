"""A panel's press at notebook 00's settings: answered from the recorded runs, and run live on its 3 seeds one after
another (as before) against side by side in worker processes.

    python benchmarks/bench_press.py [--alone] [--out benchmarks/bench_press.json]

Notebook 00's stage panel (split-mnist-fashion-animal, 6 tasks of 5 classes, 500 training and 300 test images a
task, 100 steps at lr 3e-4, seeds 0, 1, 2), driven from Python in one process:
- recorded: each of the 8 stage combinations pressed once; the shipped results hold every one (notebook 06's grid).
  The first press reads the bundle; the others are the median. Plotly's renderers are loaded before, as in the
  notebook.
- live: the holistic press with "rerun live" ticked, with `workers=1` (the three runs one after another, here, on
  torch's default threads), `workers=2` (two worker processes, one core each) and `workers=3` (one per seed). Each starts
  from a disk cache holding the trunk features and no fine-tuned task model (what a reader who opened the notebook
  has), a copy of its own. Wall time of the press, time to its first row, and whether every way gave the same numbers.
"""

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from holomerge_lab.analysis.bench import machine
from holomerge_lab.experiment import pipeline
from holomerge_lab.files import atomic_write_text
from holomerge_lab.tour import viz, widgets

CONFIG = pipeline.RunConfig(
    stream="split-mnist-fashion-animal", tasks=6, train_per_task=500, test_per_task=300, steps=100, lr=3e-4
)
SEEDS = 3
WORKERS = (1, 2, 3)  # 1: here, one after another (before); 2: one per core; 3: one per seed, sharing the cores
STAGES = ("pre", "during", "post")


def panel(**kwargs) -> widgets.Panel:
    return widgets.Panel(CONFIG, fields=STAGES, seeds=SEEDS, progress=False, **kwargs)


def recorded_presses() -> list[float]:
    """Seconds of each press of the 8 stage combinations, answered from the shipped results. Plotly's renderers are
    loaded first, as the notebook's earlier figures have loaded them before a reader reaches the panel (in a fresh
    process that import alone takes a second)."""
    viz.setup_renderer()
    go.Figure()._repr_mimebundle_()
    shown, seconds = panel(), []
    for combination in widgets.stage_combinations(CONFIG):
        for stage in STAGES:
            shown.controls[stage].value = getattr(combination, stage)
        began = time.perf_counter()
        shown.click()
        seconds.append(time.perf_counter() - began)
        if "recorded by" not in shown.status.value:
            raise SystemExit(f"{combination.label} was not answered from the shipped results: record 06 first")
    return seconds


def live_press(workers: int, cache: Path) -> dict:
    """One live press of the holistic config on SEEDS seeds from a copy of `cache`: seconds, first row, runs."""
    os.environ["HOLOMERGE_CACHE"] = str(cache)
    live = panel(workers=workers)
    live.rerun_live.value = True
    began, landed = time.perf_counter(), []
    redraw = live._redraw
    live._redraw = lambda: (landed.append(time.perf_counter() - began), redraw())
    live.click()
    seconds = time.perf_counter() - began
    if live.error:
        raise SystemExit(live.error)
    return {"seconds": seconds, "first_row_s": landed[0], "rows_at_s": landed, "runs": live.results}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "bench_press.json")
    parser.add_argument("--alone", action="store_true", help="say that nothing else ran on the machine meanwhile")
    args = parser.parse_args()
    recorded = recorded_presses()
    with tempfile.TemporaryDirectory() as folder:
        features = Path(folder) / "features"
        os.environ["HOLOMERGE_CACHE"] = str(features)
        for seed in range(SEEDS):  # the trunk features a reader's open notebook has computed
            pipeline.prepare(dataclasses.replace(CONFIG, seed=seed), progress=False)
        presses = {}
        for workers in WORKERS:
            cache = Path(folder) / f"workers-{workers}"
            shutil.copytree(features, cache)
            presses[workers] = live_press(workers, cache)
    same = all(
        a.seed == b.seed and np.allclose(a.acc_matrix, b.acc_matrix, atol=1e-6, equal_nan=True)
        for w in WORKERS[1:]
        for a, b in zip(presses[1]["runs"], presses[w]["runs"], strict=True)
    )
    record = {
        "command": "python benchmarks/bench_press.py" + (" --alone" if args.alone else ""),
        "machine": machine(),
        "alone": args.alone,
        "config": pipeline.recorded_settings(CONFIG),
        "seeds": SEEDS,
        "recorded_first_s": recorded[0],
        "recorded_median_s": statistics.median(recorded[1:]),
        "live": {
            str(w): {k: v for k, v in p.items() if k != "runs"} | {"acc": [r.acc for r in p["runs"]]}
            for w, p in presses.items()
        },
        "ratio_side_by_side": {str(w): presses[w]["seconds"] / presses[1]["seconds"] for w in WORKERS[1:]},
        "same_numbers": same,
    }
    atomic_write_text(args.out, json.dumps(record, indent=1) + "\n")
    print(json.dumps({k: v for k, v in record.items() if k not in ("config", "machine")}, indent=1))


if __name__ == "__main__":
    main()
