"""The search for an embedded class-incremental stream with headroom (issue 11), reproducible.

Headroom: over 5 seeds, an individually fine-tuned model beats zero-shot on its own task by >= 10 points under the
all-class head, and joint training beats zero-shot by >= 15 points. Each candidate runs `zero-shot`, `individual`
and `joint` (quick preset unless it says otherwise) over the seeds; results accumulate in
benchmarks/cil_headroom.json (a rerun skips what is there) and the table in benchmarks/cil_headroom.md.

    OMP_NUM_THREADS=1 python benchmarks/cil_headroom.py [--seeds 0 1 2 3 4] [--only NAME ...] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from holomerge_lab import stats
from holomerge_lab.pipeline import RunConfig
from holomerge_lab.sweep import sweep

HERE = Path(__file__).parent
RESULTS = HERE / "cil_headroom.json"
ANIMAL_CONFUSED = [4, 7, 0, 8, 1, 2, 6, 9, 3, 5]  # greedy pairs on the zero-shot confusion matrix (issue 11)
LABEL_ORDER = list(range(10))
METHODS = ("zero-shot", "individual", "joint")

CANDIDATES: dict[str, dict] = {
    "split-animal": dict(stream="split-animal"),
    "split-animal, confused pairs": dict(stream="split-animal", order=ANIMAL_CONFUSED),
    "split-fashion, label order": dict(stream="split-fashion", order=LABEL_ORDER),
    "split-fashion (confusable pairs)": dict(stream="split-fashion"),
    "split-fashion, 300 steps": dict(stream="split-fashion", steps=300),
    "split-fashion, lr 3e-4": dict(stream="split-fashion", lr=3e-4),
    "split-fashion, 96 px": dict(stream="split-fashion", image_size=96),
    "split-fashion, blocks 14-15": dict(stream="split-fashion", trainable_from=14),
}


def load() -> list[dict]:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else []


def summary(rows: list[dict]) -> list[dict]:
    """Per candidate: mean ± 95 % CI of zero-shot / individual / joint ACC and of the two paired gaps."""
    out = []
    for name in dict.fromkeys(r["candidate"] for r in rows):
        acc = {m: {r["seed"]: r["acc"] for r in rows if r["candidate"] == name and r["method"] == m} for m in METHODS}
        seeds = sorted(set.intersection(*(set(a) for a in acc.values())))
        if not seeds:
            continue
        row = {"candidate": name, "n": len(seeds)}
        for m in METHODS:
            row[m] = stats.format_interval(stats.interval([acc[m][s] for s in seeds]), points=True)
        for m in ("individual", "joint"):
            gap = stats.interval([acc[m][s] - acc["zero-shot"][s] for s in seeds])
            row[f"{m} − zero-shot"] = stats.format_interval(gap, points=True, signed=True)
        out.append(row)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--only", nargs="+", help="candidate names (default: all)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    rows = load()
    done = {(r["candidate"], r["method"], r["seed"]) for r in rows}
    todo = []
    for name, overrides in CANDIDATES.items():
        if args.only and name not in args.only:
            continue
        for seed in args.seeds:
            for method in METHODS:
                if (name, method, seed) not in done:
                    todo.append((name, RunConfig(method=method, seed=seed, **overrides)))
    batch = 6  # two seeds of one candidate per pool: a killed search keeps what finished
    for i in range(0, len(todo), batch):
        part = todo[i : i + batch]
        results = sweep([c for _, c in part], workers=args.workers)
        for (name, config), r in zip(part, results, strict=True):
            rows.append({"candidate": name, "method": config.method, "seed": config.seed, "acc": r["acc"],
                         "seconds": r["seconds"], "config": {k: v for k, v in vars(config).items() if v is not None}})
        RESULTS.write_text(json.dumps(rows, indent=1))
        print(f"{i + len(part)}/{len(todo)} runs", file=sys.stderr, flush=True)
    table = summary(rows)
    lines = ["| " + " | ".join(table[0]) + " |", "|" + "---|" * len(table[0])] if table else []
    lines += ["| " + " | ".join(str(v) for v in row.values()) + " |" for row in table]
    (HERE / "cil_headroom.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
