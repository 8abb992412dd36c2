"""A panel's press at notebook 00's settings: answered from the recorded runs, and run live on its 3 seeds, before
and after the direct BatchNorm tangent (models/frozen_batchnorm.py), against seeds side by side in processes.

    python benchmarks/bench_press.py [--alone] [--out benchmarks/bench_press.json]

Notebook 00's stage panel (split-mnist-fashion-animal, 6 tasks of 5 classes, 500 training and 300 test images a
task, 100 steps at lr 3e-4, seeds 0, 1, 2), driven from Python in one process:
- recorded: each of the 8 stage combinations pressed once; the shipped results hold every one (notebook 06's grid).
  The first press reads the bundle; the others are the median. Plotly's renderers are loaded before, as in the
  notebook.
- live: the holistic press with "rerun live" ticked, its three runs one after another in this process on torch's
  threads (what the panel does), before (torch's own forward-mode rule for BatchNorm, `batch_norm_jvp`) and after
  (`TangentBatchNorm2d`), each from a copy of a disk cache holding the trunk features and no fine-tuned task model
  (what a reader who opened the notebook has), in the order before, after, after, before (drift cancels); the mean
  of each arm's wall time and time to its first row, and whether every press gave the same numbers.
- side by side, the alternative the panel does not take: the same three runs in two spawned worker processes with
  one intra-op thread each, and the panel's press with pre unticked (standard fine-tuning) on seed 0 in a worker
  against here: whether one thread gives the numbers of torch's threads.
"""

import argparse
import contextlib
import dataclasses
import json
import multiprocessing
import os
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import torch
from torch import nn

from holomerge_lab.analysis.bench import machine
from holomerge_lab.experiment import pipeline
from holomerge_lab.files import atomic_write_text
from holomerge_lab.models.frozen_batchnorm import TangentBatchNorm2d
from holomerge_lab.tour import viz, widgets

CONFIG = pipeline.RunConfig(
    stream="split-mnist-fashion-animal", tasks=6, train_per_task=500, test_per_task=300, steps=100, lr=3e-4
)
SEEDS = 3
STAGES = ("pre", "during", "post")


def panel() -> widgets.Panel:
    return widgets.Panel(CONFIG, fields=STAGES, seeds=SEEDS, progress=False)


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


@contextlib.contextmanager
def torch_batchnorm_rule():
    """Before: every TangentBatchNorm2d computes its tangent with torch's own rule, as nn.BatchNorm2d does."""
    direct = TangentBatchNorm2d.forward
    TangentBatchNorm2d.forward = nn.BatchNorm2d.forward
    try:
        yield
    finally:
        TangentBatchNorm2d.forward = direct


def live_press(cache: Path) -> dict:
    """One live press of the holistic config on SEEDS seeds from `cache`: seconds, first row, runs."""
    os.environ["HOLOMERGE_CACHE"] = str(cache)
    live = panel()
    live.rerun_live.value = True
    began, landed = time.perf_counter(), []
    redraw = live._redraw
    live._redraw = lambda: (landed.append(time.perf_counter() - began), redraw())
    live.click()
    seconds = time.perf_counter() - began
    if live.error:
        raise SystemExit(live.error)
    return {"seconds": seconds, "first_row_s": landed[0], "rows_at_s": landed, "runs": live.results}


def mean_press(presses: list[dict]) -> dict:
    """The mean wall time and first row of repeated presses (their runs must agree bit for bit)."""
    if not all(same(presses[0]["runs"], p["runs"]) for p in presses):
        raise SystemExit("two presses of the same runs gave different numbers")
    return {
        "seconds": statistics.mean(p["seconds"] for p in presses),
        "first_row_s": statistics.mean(p["first_row_s"] for p in presses),
        "each_s": [p["seconds"] for p in presses],
        "first_rows_s": [p["first_row_s"] for p in presses],
        "runs": presses[0]["runs"],
    }


def one_thread_run(config: pipeline.RunConfig, cache: str) -> pipeline.RunResult:
    """A panel's live run in a worker process on one intra-op thread (the side-by-side alternative)."""
    os.environ["HOLOMERGE_CACHE"] = cache
    torch.set_num_threads(1)
    return widgets._run_one(config, pipeline.prepare(config, progress=False), progress=False)


def side_by_side(configs: list[pipeline.RunConfig], cache: Path) -> dict:
    """`configs` in two spawned worker processes, one thread each: seconds, when each run landed, runs."""
    began, landed, runs = time.perf_counter(), [], []
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        for run in pool.map(one_thread_run, configs, [str(cache)] * len(configs)):
            landed.append(time.perf_counter() - began)
            runs.append(run)
    return {"seconds": time.perf_counter() - began, "first_row_s": landed[0], "rows_at_s": landed, "runs": runs}


def same(a: list[pipeline.RunResult], b: list[pipeline.RunResult]) -> bool:
    """Bit for bit: the same accuracy matrices, seed by seed."""
    return all(
        x.seed == y.seed and np.array_equal(x.acc_matrix, y.acc_matrix, equal_nan=True)
        for x, y in zip(a, b, strict=True)
    )


def summary(press: dict) -> dict:
    return {k: v for k, v in press.items() if k != "runs"} | {"acc": [r.acc for r in press["runs"]]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "bench_press.json")
    parser.add_argument("--alone", action="store_true", help="say that nothing else ran on the machine meanwhile")
    args = parser.parse_args()
    recorded = recorded_presses()
    seeded = [dataclasses.replace(CONFIG, seed=seed) for seed in range(SEEDS)]
    with tempfile.TemporaryDirectory() as folder:
        features = Path(folder) / "features"
        os.environ["HOLOMERGE_CACHE"] = str(features)
        for config in seeded:  # the trunk features a reader's open notebook has computed
            pipeline.prepare(config, progress=False)

        def fresh(name: str) -> Path:
            shutil.copytree(features, Path(folder) / name)
            return Path(folder) / name

        presses: dict[str, list[dict]] = {"before": [], "after": []}
        for i, arm in enumerate(("before", "after", "after", "before")):
            with torch_batchnorm_rule() if arm == "before" else contextlib.nullcontext():
                presses[arm].append(live_press(fresh(f"{arm}-{i}")))
        before, after = (mean_press(presses[arm]) for arm in ("before", "after"))
        parallel = side_by_side(seeded, fresh("side-by-side"))
        standard = dataclasses.replace(CONFIG, pre=False)
        os.environ["HOLOMERGE_CACHE"] = str(fresh("standard-here"))
        here = widgets._run_one(standard, pipeline.prepare(standard, progress=False), progress=False)
        one_thread = side_by_side([standard], fresh("standard-one-thread"))["runs"][0]
    record = {
        "command": "python benchmarks/bench_press.py" + (" --alone" if args.alone else ""),
        "machine": machine(),
        "alone": args.alone,
        "config": pipeline.recorded_settings(CONFIG),
        "seeds": SEEDS,
        "recorded_first_s": recorded[0],
        "recorded_median_s": statistics.median(recorded[1:]),
        "live": {"before": summary(before), "after": summary(after), "side_by_side": summary(parallel)},
        "ratio_after": after["seconds"] / before["seconds"],
        "ratio_side_by_side": parallel["seconds"] / after["seconds"],
        "same_numbers_after": same(before["runs"], after["runs"]),
        "same_numbers_side_by_side": same(after["runs"], parallel["runs"]),
        "standard_seed0": {
            "threads_here": torch.get_num_threads(),
            "acc_here": here.acc,
            "acc_one_thread": one_thread.acc,
            "same_numbers": same([here], [one_thread]),
        },
    }
    atomic_write_text(args.out, json.dumps(record, indent=1) + "\n")
    print(json.dumps({k: v for k, v in record.items() if k not in ("config", "machine")}, indent=1))


if __name__ == "__main__":
    main()
