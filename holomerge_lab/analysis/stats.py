"""Statistics over seeds: a mean with its 95 % t-interval, and paired per-seed differences.

Seed spread on these benchmarks is often larger than the effect of a stage, so one seed is a preview, never a
verdict. Two configurations run on the same seeds see the same data subsets and task draws, so their difference
per seed cancels most of that spread: the paired interval of the differences is the one to read for "does A beat
B", not the overlap of the two intervals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _scipy_stats

CONFIDENCE = 0.95
MIN_SEEDS_FOR_VERDICT = 3


@dataclass(frozen=True)
class Interval:
    """A mean with its two-sided t-interval over n values (low = high = mean when n < 2: no spread to measure)."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Student-t interval for the mean: mean ± t_{(1+c)/2, n−1} · s/√n, with s the sample standard deviation."""
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or len(x) == 0:
        raise ValueError(f"need a non-empty list of numbers, got {values!r}")
    mean = float(x.mean())
    if len(x) < 2:
        return Interval(mean, mean, mean, len(x))
    half = (
        float(_scipy_stats.t.ppf((1 + confidence) / 2, len(x) - 1)) * float(x.std(ddof=1)) / math.sqrt(len(x))
    )
    return Interval(mean, mean - half, mean + half, len(x))


@dataclass(frozen=True)
class Effect:
    """The paired difference a − b over the seeds both have: its interval, and how many seeds agree in sign."""

    interval: Interval
    positive: int  # seeds where a > b
    negative: int  # seeds where a < b
    seeds: tuple[int, ...]

    @property
    def agree(self) -> int:
        """Seeds whose difference has the sign of the mean difference (ties count for neither)."""
        return self.positive if self.interval.mean >= 0 else self.negative

    @property
    def verdict(self) -> str:
        """Whether the interval excludes 0: 'a > b', 'a < b', 'unclear' (it spans 0), or no difference at all.
        Fewer than 3 seeds give no verdict: one is a preview, and two that happen to agree exactly would give a
        zero-width interval."""
        if self.interval.n < 2:
            return "one seed: a preview"
        if self.positive == self.negative == 0:
            return "identical on every seed"
        if self.interval.n < MIN_SEEDS_FOR_VERDICT:  # two equal differences give a zero-width interval
            return "two seeds: too few for a verdict"
        if self.interval.low > 0:
            return "a > b"
        if self.interval.high < 0:
            return "a < b"
        return "unclear (CI spans 0)"


def paired(a: Mapping[int, float], b: Mapping[int, float], confidence: float = CONFIDENCE) -> Effect:
    """a − b per seed (seed -> value maps; only seeds in both count), and the t-interval of those differences."""
    seeds = tuple(sorted(set(a) & set(b)))
    if not seeds:
        raise ValueError("the two runs share no seed: a paired difference needs the same seeds on both sides")
    diffs = [a[s] - b[s] for s in seeds]
    return Effect(interval(diffs, confidence), sum(d > 0 for d in diffs), sum(d < 0 for d in diffs), seeds)


def format_interval(
    iv: Interval, *, points: bool = False, signed: bool = False, digits: int | None = None
) -> str:
    """'0.7534 ± 0.0081' (or in points, '75.3 ± 0.8'); just the mean when n < 2."""
    scale, digits = (
        (100.0, 1 if digits is None else digits) if points else (1.0, 4 if digits is None else digits)
    )
    sign = "+" if signed else ""
    text = f"{iv.mean * scale:{sign}.{digits}f}"
    return text if iv.n < 2 else f"{text} ± {iv.half_width * scale:.{digits}f}"
