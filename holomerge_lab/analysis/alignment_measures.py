"""Alignment's effect over seeds: the numbers of `probes.alignment_trace`, one value per seed.

A trace measures every merge twice, straight after the merge and after its alignment, so within a seed "after −
before" is paired by construction. Over seeds the question is whether that difference is more than seed noise, which
`analysis.reading` answers from seed -> value maps. Each function here turns {seed: the trace's steps} into such a
map (the mean over the merges of one run), so a notebook reads "does alignment cut the discrepancy" and "does it
raise accuracy" from the same runs, with the same pairing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from ..errors import UserError
from .probes import AlignmentStep

BySeed = Mapping[int, Sequence[AlignmentStep]]  # seed -> one run's steps (one per merge)


def over_merges(by_seed: BySeed, value: Callable[[AlignmentStep], float]) -> dict[int, float]:
    """seed -> the mean of `value(step)` over that run's merges."""
    out = {}
    for seed, steps in by_seed.items():
        if not steps:
            raise UserError(f"seed {seed}'s trace has no merge: a trace needs at least two tasks")
        out[seed] = sum(value(s) for s in steps) / len(steps)
    return out


def accuracy_sides(by_seed: BySeed) -> tuple[dict[int, float], dict[int, float]]:
    """(seed -> accuracy after alignment, seed -> accuracy straight after the merge), each the mean over merges: the
    two sides of "does alignment raise accuracy", paired per seed and per merge."""
    return over_merges(by_seed, lambda s: s.accuracy["aligned"]), over_merges(by_seed, lambda s: s.accuracy["merged"])


def discrepancy_cut(by_seed: BySeed, data: str, loss: str) -> dict[int, float]:
    """seed -> the mean over merges of the fraction of the merge's discrepancy that alignment removed (1: all of it,
    0: none, below 0: alignment added some). A fraction, so merges with large and small discrepancies weigh alike."""
    return over_merges(by_seed, lambda s: s.reduction(data, loss))


def sweep_sides(
    runs: Sequence[Mapping], stream: str, setting: str, baseline: str = "no alignment"
) -> tuple[dict[int, float], dict[int, float]]:
    """(seed -> final ACC with alignment `setting`, seed -> final ACC with `baseline`) on `stream`, from the alignment
    sweep's runs (benchmarks/alignment_sweep.json: one dict per run, its stream under "candidate", its alignment
    setting under "method", its "seed" and "acc"). A whole run with and without the stage, where a trace measures
    each merge right after it: the sweep says what alignment does to the method's final accuracy."""
    sides: tuple[dict[int, float], dict[int, float]] = ({}, {})
    for side, name in zip(sides, (setting, baseline), strict=True):
        for run in runs:
            if run["candidate"] == stream and run["method"] == name:
                side[int(run["seed"])] = float(run["acc"])
        if not side:
            found = sorted({r["method"] for r in runs if r["candidate"] == stream})
            raise UserError(f"the sweep holds no run of {name!r} on {stream}; it holds {found}")
    return sides
