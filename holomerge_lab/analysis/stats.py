"""Statistics over seeds: a mean with its 95 % t-interval, paired per-seed differences, and their verdicts.

Seed spread on these benchmarks is often larger than the effect of a stage, so one seed is a preview, never a
verdict. Two configurations run on the same seeds see the same data subsets and task draws, so their difference
per seed cancels most of that spread: the paired interval of the differences is the one to read for "does A beat
B", not the overlap of the two intervals.

A verdict is one of four words. "a > b" / "a < b": the paired t-test rejects a difference of 0 (the 95 % interval
excludes 0). "equivalent within ±m": the two one-sided tests (TOST) reject a difference of at least m either way
(the 90 % interval lies inside ±m), so "no difference" is a test at a stated margin, never a wide interval read as
equal. "cannot tell apart": neither. A table of comparisons is a family: `verdicts` gives each row's raw verdict and
its verdict after Holm's step-down adjustment over the family, for both tests.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _scipy_stats

CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE  # each test's level; Holm's adjustment keeps a table's family-wise error at it
MARGIN = 0.01  # the default equivalence margin: ±1 point of accuracy
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
    """The paired difference a − b over the seeds both have: its interval, how many seeds agree in sign, and the
    differences themselves (what the tests read)."""

    interval: Interval
    positive: int  # seeds where a > b
    negative: int  # seeds where a < b
    seeds: tuple[int, ...]
    differences: tuple[float, ...]

    @property
    def agree(self) -> int:
        """Seeds whose difference has the sign of the mean difference (ties count for neither)."""
        return self.positive if self.interval.mean >= 0 else self.negative

    @property
    def untested(self) -> str | None:
        """Why there is no test: one seed is a preview; two that happen to agree exactly would give a zero-width
        interval; all-zero differences need none. None when the tests apply."""
        if self.interval.n < 2:
            return "one seed: a preview"
        if self.positive == self.negative == 0:
            return "identical on every seed"
        if self.interval.n < MIN_SEEDS_FOR_VERDICT:
            return "two seeds: too few for a verdict"
        return None

    @property
    def p_value(self) -> float:
        """Two-sided paired t-test of a mean difference of 0 (NaN when untested)."""
        return math.nan if self.untested else _t_tail(self.differences, 0.0, "two-sided")

    def equivalence_p(self, margin: float = MARGIN) -> float:
        """Two one-sided tests at ±margin: the larger p of H0 "mean ≤ −margin" and H0 "mean ≥ +margin" (NaN when
        untested). Below alpha, the difference is inside ±margin."""
        if self.untested:
            return math.nan
        return max(_t_tail(self.differences, -margin, "greater"), _t_tail(self.differences, margin, "less"))

    @property
    def verdict(self) -> str:
        """The raw verdict at level ALPHA and the default margin (see the module docstring)."""
        return verdict_word(self, self.p_value, self.equivalence_p(MARGIN), MARGIN)


def _t_tail(x: Sequence[float], mu: float, alternative: str) -> float:
    """The one-sample t-test's p of mean = mu against `alternative` ("two-sided", "greater", "less"). With no
    spread at all the statistic is ±inf (or 0/0 when the mean is mu, read as no evidence)."""
    x = np.asarray(x, dtype=float)
    diff, sd = float(x.mean()) - mu, float(x.std(ddof=1))
    t = diff / (sd / math.sqrt(len(x))) if sd > 0 else (math.copysign(math.inf, diff) if diff else 0.0)
    tail = _scipy_stats.t(len(x) - 1)
    if alternative == "greater":
        return float(tail.sf(t))
    if alternative == "less":
        return float(tail.cdf(t))
    return float(2 * tail.sf(abs(t)))


def verdict_word(effect: Effect, p: float, p_equivalent: float, margin: float, alpha: float = ALPHA) -> str:
    """'a > b' / 'a < b' when p < alpha, else 'equivalent within ±m points' when the equivalence p < alpha, else
    'cannot tell apart'; the reason when the effect is untested."""
    if effect.untested:
        return effect.untested
    if p < alpha:
        return "a > b" if effect.interval.mean > 0 else "a < b"
    if p_equivalent < alpha:
        return f"equivalent within {margin_words(margin)}"
    return "cannot tell apart"


def margin_words(margin: float) -> str:
    """'±1 point', '±0.5 points': a margin in accuracy, in points."""
    points = margin * 100
    return f"±{points:g} point{'' if points == 1 else 's'}"


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values: the i-th smallest of m becomes max over j ≤ i of min(1, (m − j + 1)·p(j)).
    NaN (an untested row) is not in the family and stays NaN."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    adjusted, running = [math.nan] * len(p_values), 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        adjusted[i] = running
    return adjusted


@dataclass(frozen=True)
class Verdicts:
    """One row of a family: its tests' p-values raw and Holm-adjusted, and the verdict from each."""

    p: float
    p_holm: float
    p_equivalent: float
    p_equivalent_holm: float
    margin: float
    raw: str
    adjusted: str


def verdicts(effects: Sequence[Effect], margin: float = MARGIN, alpha: float = ALPHA) -> list[Verdicts]:
    """The verdicts of a table of comparisons: each row raw, and Holm-adjusted over the table's rows (the
    difference tests and the equivalence tests each as one family)."""
    if not (math.isfinite(margin) and margin > 0):
        raise ValueError(f"the equivalence margin must be a positive number, got {margin}")
    p = [e.p_value for e in effects]
    q = [e.equivalence_p(margin) for e in effects]
    out = []
    for e, pi, qi, ph, qh in zip(effects, p, q, holm(p), holm(q), strict=True):
        out.append(Verdicts(pi, ph, qi, qh, margin, verdict_word(e, pi, qi, margin, alpha),
                            verdict_word(e, ph, qh, margin, alpha)))  # fmt: skip
    return out


def paired(a: Mapping[int, float], b: Mapping[int, float], confidence: float = CONFIDENCE) -> Effect:
    """a − b per seed (seed -> value maps; only seeds in both count), and the t-interval of those differences."""
    seeds = tuple(sorted(set(a) & set(b)))
    if not seeds:
        raise ValueError("the two runs share no seed: a paired difference needs the same seeds on both sides")
    diffs = tuple(a[s] - b[s] for s in seeds)
    return Effect(interval(diffs, confidence), sum(d > 0 for d in diffs), sum(d < 0 for d in diffs), seeds, diffs)


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
