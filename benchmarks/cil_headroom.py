"""The search for an embedded class-incremental stream with headroom (issue 11), reproducible.

Headroom: over 5 seeds, an individually fine-tuned model beats zero-shot on its own task by >= 10 points under the
all-class head, and joint training beats zero-shot by >= 15 points. Each candidate runs `zero-shot`, `individual`
and `joint` (quick preset unless it says otherwise) over the seeds; results accumulate in
benchmarks/cil_headroom.json (a rerun skips what is there) and the table in benchmarks/cil_headroom.md.

    OMP_NUM_THREADS=1 python benchmarks/cil_headroom.py [--seeds 0 1 2 3 4] [--only NAME ...] [--workers 2]
"""

from __future__ import annotations

import sys
from pathlib import Path

import seeded_search
from seeded_search import by_seed

from holomerge_lab.analysis import stats

HERE = Path(__file__).parent
RESULTS = HERE / "cil_headroom.json"
ANIMAL_CONFUSED = [4, 7, 0, 8, 1, 2, 6, 9, 3, 5]  # greedy pairs on the zero-shot confusion matrix (issue 11)
METHODS = ("zero-shot", "individual", "joint")

MFA = "split-mnist-fashion-animal"
CANDIDATES: dict[str, dict] = {
    f"{MFA} (confusion order)": dict(stream=MFA, test_per_task=500),
    f"{MFA}, label order": dict(stream=MFA, order=list(range(30)), test_per_task=500),
    f"{MFA}, lr 3e-4": dict(stream=MFA, test_per_task=500, lr=3e-4),
    "split-fashion (confusable pairs)": dict(stream="split-fashion"),
    "split-animal": dict(stream="split-animal"),
    "split-animal, confused pairs": dict(stream="split-animal", order=ANIMAL_CONFUSED),
}


def summary(rows: list[dict]) -> list[dict]:
    """Per candidate: mean ± 95 % CI of zero-shot / individual / joint ACC and of the two paired gaps."""
    out = []
    for name in dict.fromkeys(r["candidate"] for r in rows):
        acc = {m: by_seed(rows, name, m) for m in METHODS}
        seeds = sorted(set.intersection(*(set(a) for a in acc.values())))
        if not seeds:
            continue
        row = {"candidate": name, "n": len(seeds)}
        for m in METHODS:
            row[m] = stats.format_interval(stats.interval([acc[m][s] for s in seeds]), points=True)
        for m in ("individual", "joint"):
            gap = stats.paired(acc[m], acc["zero-shot"]).interval
            row[f"{m} − zero-shot (points)"] = stats.format_interval(gap, points=True, signed=True)
        out.append(row)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = seeded_search.parser(__doc__)
    parser.add_argument("--only", nargs="+", help="candidate names (default: all)")
    parser.add_argument(
        "--import-runs", nargs=2, metavar=("CANDIDATE", "DIR"),
        help="take CANDIDATE's zero-shot / individual / joint runs from a `compare --out DIR` folder with the "
        "same settings (e.g. the evidence runs of docs/results.md) instead of running them again",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.import_runs:
        seeded_search.import_runs(args.import_runs[0], Path(args.import_runs[1]), METHODS, RESULTS)
    chosen = {n: c for n, c in CANDIDATES.items() if not args.only or n in args.only}
    rows = seeded_search.run_search(chosen, METHODS, args.seeds, RESULTS, workers=args.workers)
    seeded_search.write_markdown(summary(rows), HERE / "cil_headroom.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
