"""Does post-merge alignment help? Its paired effect over seeds, per setting, on each demo stream (issue 11).

Every setting is the full holistic method with one alignment configuration; its effect is holistic(setting) −
holistic −post on the same seed. The grid covers what the authors' code varies and what it fixes: the parameter
(the feature bias, or the final projection as the authors align), the teacher (the previous merged model, as the
authors, or the new task's fine-tuned model), the loss, the steps and the learning rate (the authors' CIL script
uses 1e-7, one pass over the task, decay 0.01, clip 1). Results accumulate in benchmarks/alignment_sweep.json; the
table goes to benchmarks/alignment_sweep.md, with each stream's settings as one family: the raw verdict and the one
after Holm's adjustment over that stream's rows (equivalence at ±1 point, analysis/stats.py).

    OMP_NUM_THREADS=1 python benchmarks/alignment_sweep.py [--seeds 0 1 2 3 4] [--streams ...] [--settings 0 2 ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

import seeded_search
from seeded_search import by_seed

from holomerge_lab.analysis import stats

HERE = Path(__file__).parent
RESULTS = HERE / "alignment_sweep.json"
OFF = {"name": "no alignment", "method": "holistic", "post": False}
SETTINGS = {
    "bias, previous, mse, 20 steps, lr 1e-3 (default)": {},
    "projection, previous, mse, 20 steps, lr 1e-3": {"align_parameter": "projection"},
    "bias, current, mse, 20 steps, lr 1e-3": {"align_teacher": "current"},
    "projection, current, mse, 20 steps, lr 1e-3": {"align_parameter": "projection", "align_teacher": "current"},
    "bias, previous, cosine, 20 steps, lr 1e-3": {"align_loss": "cosine"},
    "bias, previous, mse, 100 steps, lr 1e-2": {"align_steps": 100, "align_lr": 1e-2},
    "projection, previous, mse, 100 steps, lr 1e-2": {
        "align_parameter": "projection", "align_steps": 100, "align_lr": 1e-2,
    },
    "projection, current, mse, 100 steps, lr 1e-2": {
        "align_parameter": "projection", "align_teacher": "current", "align_steps": 100, "align_lr": 1e-2,
    },
    "projection, previous, mse, 20 steps, lr 1e-7": {"align_parameter": "projection", "align_lr": 1e-7},
    # the authors' CIL alignment as far as this benchmark allows: one pass over the task's 1000 training images at
    # batch 64 (16 steps), AdamW's default decay 0.01, clip 1.0 (scripts/CIL/all.sh, finetune_splitted_linear.py)
    "projection, previous, mse, one pass (16 steps), lr 1e-7, decay 0.01, clip 1 (authors' CIL alignment)": {
        "align_parameter": "projection", "align_lr": 1e-7, "align_steps": 16, "align_weight_decay": 0.01,
        "align_grad_clip": 1.0,
    },
}  # fmt: skip
STREAMS = ("split-mnist-fashion-animal", "rotated-mnist")
TEST_PER_TASK = 500  # as the evidence runs of docs/results.md, so "no alignment" and the default are their rows


def table(rows: list[dict]) -> list[dict]:
    out = []
    for stream in dict.fromkeys(r["candidate"] for r in rows):
        off = by_seed(rows, stream, OFF["name"])
        measured = {name: by_seed(rows, stream, name) for name in SETTINGS}
        measured = {name: on for name, on in measured.items() if set(on) & set(off)}
        effects = {name: stats.paired(on, off) for name, on in measured.items()}
        judged = stats.verdicts(list(effects.values()))
        for (name, effect), verdict in zip(effects.items(), judged, strict=True):
            out.append({
                "stream": stream, "alignment": name, "n": effect.interval.n,
                "ACC with it": stats.format_interval(stats.interval([measured[name][s] for s in effect.seeds])),
                "Δ ACC (points)": stats.format_interval(effect.interval, points=True, signed=True, digits=2),
                "seeds agreeing": f"{effect.agree}/{effect.interval.n}", "verdict": _words(verdict.raw),
                "verdict (Holm)": _words(verdict.adjusted),
            })  # fmt: skip
    return out


def _words(verdict: str) -> str:
    return verdict.replace("a > b", "helps").replace("a < b", "hurts")


def main(argv: list[str] | None = None) -> int:
    parser = seeded_search.parser(__doc__)
    parser.add_argument("--streams", nargs="+", default=list(STREAMS))
    parser.add_argument("--settings", nargs="+", type=int, help="indices into SETTINGS (default: all)")
    args = parser.parse_args(argv)
    chosen = [n for i, n in enumerate(SETTINGS) if args.settings is None or i in args.settings]
    methods = [OFF] + [{"name": n, "method": "holistic", **SETTINGS[n]} for n in chosen]
    candidates = {s: {"stream": s, "test_per_task": TEST_PER_TASK} for s in args.streams}
    rows = seeded_search.run_search(candidates, methods, args.seeds, RESULTS, workers=args.workers)
    seeded_search.write_markdown(table(rows), HERE / "alignment_sweep.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
