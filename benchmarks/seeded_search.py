"""Named candidates × methods × seeds, run in parallel worker processes, accumulated in one JSON file.

The searches of benchmarks/ (cil_headroom.py, alignment_sweep.py) are this loop with their own candidates: a rerun
skips every (candidate, method, seed) already in the file, so an interrupted search resumes where it stopped and
a new candidate costs only its own runs. Fine-tuned tasks are shared between runs through the task cache.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from holomerge_lab.analysis.sweep import sweep
from holomerge_lab.experiment.pipeline import RunConfig
from holomerge_lab.files import atomic_write_text


def load(path: Path) -> list[dict]:
    return json.loads(path.read_text()) if path.exists() else []


def _row(candidate: str, method: str, run: dict, config: dict) -> dict:
    return {
        "candidate": candidate, "method": method, "seed": run["seed"], "acc": run["acc"],
        "joint_accuracy": run["joint_accuracy"][-1], "bwt": run["bwt"], "acc_matrix": run["acc_matrix"],
        "seconds": run["seconds"], "config": config,
    }  # fmt: skip


def run_search(
    candidates: Mapping[str, dict],
    methods: Sequence[str | dict],
    seeds: Sequence[int],
    path: Path,
    *,
    workers: int = 2,
    batch: int = 6,
) -> list[dict]:
    """Run what `path` does not hold yet, `batch` runs per worker pool (so a killed search keeps what finished).

    A method is a name, or a dict of RunConfig fields with a "name" (e.g. {"name": "no-post", "method":
    "holistic", "post": False}); each stored row has the candidate, the method name, the seed, the run's JSON
    metrics and the settings."""
    rows = load(path)
    done = {(r["candidate"], r["method"], r["seed"]) for r in rows}
    todo = []
    for seed in seeds:
        for name, overrides in candidates.items():
            for method in methods:
                fields = {"method": method} if isinstance(method, str) else dict(method)
                label = fields.pop("name", fields["method"])
                if (name, label, seed) not in done:
                    todo.append((name, label, RunConfig(seed=seed, **{**overrides, **fields})))
    for i in range(0, len(todo), batch):
        part = todo[i : i + batch]
        results = sweep([c for *_, c in part], workers=workers)
        for (name, label, config), r in zip(part, results, strict=True):
            rows.append(_row(name, label, r, {k: v for k, v in vars(config).items() if v is not None}))
        atomic_write_text(path, json.dumps(rows, indent=1))
        print(f"{i + len(part)}/{len(todo)} runs", file=sys.stderr, flush=True)
    return rows


def import_runs(candidate: str, folder: Path, methods: Sequence[str], path: Path) -> int:
    """Add the runs of `methods` saved in a `compare --out` folder to `path` as `candidate`'s rows (those not there
    yet); returns how many were added."""
    rows = load(path)
    done = {(r["candidate"], r["method"], r["seed"]) for r in rows}
    added = 0
    for file in sorted(folder.glob("*.json")):
        r = json.loads(file.read_text())
        if (
            not isinstance(r, dict)
            or r.get("label") not in methods
            or (candidate, r["label"], r["seed"]) in done
        ):
            continue
        rows.append({**_row(candidate, r["label"], r, r["config"]), "imported_from": str(file)})
        added += 1
    atomic_write_text(path, json.dumps(rows, indent=1))
    return added


def by_seed(rows: Sequence[dict], candidate: str, method: str, key: str = "acc") -> dict[int, float]:
    return {r["seed"]: r[key] for r in rows if r["candidate"] == candidate and r["method"] == method}


def parser(doc: str) -> argparse.ArgumentParser:
    """A search's command line: --seeds and --workers; the search adds what it selects."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--workers", type=int, default=2)
    return p


def markdown(table: Sequence[dict]) -> list[str]:
    """The table's lines in markdown (none for an empty table)."""
    lines = ["| " + " | ".join(table[0]) + " |", "|" + "---|" * len(table[0])] if table else []
    return lines + ["| " + " | ".join(str(v) for v in row.values()) + " |" for row in table]


def write_markdown(table: Sequence[dict], path: Path) -> None:
    """The table as markdown, to `path` and stdout."""
    lines = markdown(table)
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
