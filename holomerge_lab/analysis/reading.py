"""What the numbers say: one sentence that reads values just computed and states the verdict with its interval.

A notebook asks the reader to predict, then computes. These functions write the answer from the numbers, so the
prose beside a figure cannot disagree with it on any seed or size: a difference between two settings on the same
seeds (`difference`), or a quantity against a bound it is expected to pass (`level`). Both use the tests of
`analysis/stats.py`: a difference is "higher", "lower", "equivalent within ±m" or "cannot tell apart"; a level is
"above", "below" or "cannot tell from" its bound (its 95 % interval decides). With one seed the sentence says it is
a preview and gives no verdict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from . import stats


def _values(values: Mapping[int, float] | Sequence[float]) -> dict[int, float]:
    return dict(values) if isinstance(values, Mapping) else dict(enumerate(values))


def _number(x: float, scale: float, unit: str, signed: bool = False) -> str:
    return f"{x * scale:{'+' if signed else ''}.{2 if scale == 100 else 3}f}{unit}"


def difference(
    a: Mapping[int, float] | Sequence[float], b: Mapping[int, float] | Sequence[float], a_name: str, b_name: str,
    *, points: bool = True, margin: float = stats.MARGIN, predicted: str | None = None,
) -> str:  # fmt: skip
    """`a_name` − `b_name` on the seeds both have (seed -> value maps, or lists in seed order): the mean difference,
    its 95 % interval, how many seeds agree, and the verdict. `points`: accuracies, shown ×100 in points, with
    equivalence at ±`margin`; else raw numbers, with the margin in the same units. `predicted` ("higher", "lower"
    or "equivalent"): also say whether the numbers bear the prediction out."""
    effect = stats.paired(_values(a), _values(b))
    scale, unit = (100.0, " points") if points else (1.0, "")
    iv = effect.interval
    said = f"{a_name} − {b_name} = {_number(iv.mean, scale, unit, True)}"
    if iv.n < 2:
        return f"{said} on one seed: a preview, not a verdict (run more seeds)."
    said += f" ± {_number(iv.half_width, scale, '')} (95 % interval, {iv.n} seeds, {effect.agree}/{iv.n} agree in sign)"
    verdict = stats.verdict_word(effect, effect.p_value, effect.equivalence_p(margin), margin)
    words = {
        "a > b": f"{a_name} is higher than {b_name}",
        "a < b": f"{a_name} is lower than {b_name}",
        "cannot tell apart": f"these seeds cannot tell {a_name} and {b_name} apart (which is not evidence that "
        "they are equal)",
    }.get(verdict, verdict if not verdict.startswith("equivalent") else
          f"{a_name} and {b_name} are equivalent within ±{_number(margin, scale, unit)}")  # fmt: skip
    if verdict in ("a > b", "a < b") and effect.equivalence_p(margin) < stats.ALPHA:
        words += (f", by less than ±{_number(margin, scale, unit)} (equivalent within that margin too: a difference "
                  "these seeds detect, too small to matter at that margin)")  # fmt: skip
    said = f"{said}: {words}."
    if predicted is not None:
        said += " " + _judge(predicted, verdict)
    return said


def _judge(predicted: str, verdict: str) -> str:
    if predicted not in ("higher", "lower", "equivalent"):
        raise ValueError(f"a prediction is 'higher', 'lower' or 'equivalent', got {predicted!r}")
    outcome = {"a > b": "higher", "a < b": "lower"}.get(verdict, verdict.split()[0])
    if outcome in ("cannot", "one", "two", "identical"):
        return f"The prediction ({predicted}) is not decided by these seeds."
    held = outcome == predicted
    return f"The prediction ({predicted}) {'holds' if held else 'does not hold'}."


def level(
    values: Mapping[int, float] | Sequence[float], name: str, bound: float, *, unit: str = "", scale: float = 1.0,
) -> str:  # fmt: skip
    """`name` over the seeds against `bound`: its mean, 95 % interval, and whether the interval lies above, below
    or across the bound."""
    iv = stats.interval(list(_values(values).values()))
    digits = 2 if scale == 100 else 3
    said = f"{name} = {iv.mean * scale:.{digits}f}{unit}"
    if iv.n < 2:
        return f"{said} on one seed: a preview, not a verdict (run more seeds)."
    said += f" ± {iv.half_width * scale:.{digits}f} (95 % interval, {iv.n} seeds)"
    where = f"{bound * scale:.{digits}f}{unit}"
    if iv.low == iv.high == bound:
        return f"{said}: exactly {where} on every seed."
    if iv.low > bound:
        return f"{said}: above {where}."
    if iv.high < bound:
        return f"{said}: below {where}."
    return f"{said}: these seeds cannot tell it from {where}."


def association(
    xs: Sequence[float], ys: Sequence[float], x_name: str, y_name: str, *, predicted: str | None = None
) -> str:
    """Does `y_name` rise with `x_name` across a set of points (grid points, not seeds)? Spearman's ρ with its
    two-sided p of ρ = 0: "rises with", "falls with" or "these points cannot tell" at level ALPHA. `predicted`
    ("rises" or "falls"): also say whether the points bear it out."""
    from scipy.stats import spearmanr

    if len(xs) != len(ys):
        raise ValueError(f"{len(xs)} values of {x_name} against {len(ys)} of {y_name}: give one of each per point")
    if len(xs) < 3:
        return f"{y_name} against {x_name}: {len(xs)} points, too few for a rank correlation."
    rho, p = (float(v) for v in spearmanr(xs, ys))
    said = f"{y_name} against {x_name}: Spearman ρ = {rho:+.2f} over {len(xs)} points (p = {p:.3f})"
    outcome = ("rises" if rho > 0 else "falls") if p < stats.ALPHA else None
    said += f": {y_name} {outcome} with {x_name}." if outcome else ": these points cannot tell whether they move together."
    if predicted is not None:
        if predicted not in ("rises", "falls"):
            raise ValueError(f"a prediction is 'rises' or 'falls', got {predicted!r}")
        said += (f" The prediction ({predicted}) " + ("is not decided by these points." if outcome is None else
                 "holds." if outcome == predicted else "does not hold."))  # fmt: skip
    return said
