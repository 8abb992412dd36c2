"""Statistics over seeds against scipy and a t-table, and the aggregation of run JSON into rows and effects."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from holomerge_lab.analysis import evidence, stats

ACC = [0.7534, 0.7520, 0.7561, 0.7498, 0.7575]


def test_interval_matches_scipy_one_sample_t_test():
    iv = stats.interval(ACC)
    reference = scipy_stats.ttest_1samp(ACC, 0.0).confidence_interval(0.95)
    assert iv.n == 5 and iv.mean == pytest.approx(np.mean(ACC), abs=1e-15)
    assert (iv.low, iv.high) == (
        pytest.approx(reference.low, abs=1e-12),
        pytest.approx(reference.high, abs=1e-12),
    )


def test_interval_by_hand_from_a_t_table():
    # 1, 2, 3, 4, 5: mean 3, s = sqrt(2.5), t_{0.975, 4} = 2.776445 (printed tables)
    iv = stats.interval([1, 2, 3, 4, 5])
    assert iv.half_width == pytest.approx(2.776445 * math.sqrt(2.5) / math.sqrt(5), rel=1e-6)
    assert stats.interval([1, 2, 3, 4, 5], confidence=0.90).half_width == pytest.approx(
        2.131847 * math.sqrt(2.5) / math.sqrt(5), rel=1e-6
    )


def test_one_value_has_no_interval_and_empty_is_refused():
    iv = stats.interval([0.5])
    assert (iv.low, iv.mean, iv.high, iv.n) == (0.5, 0.5, 0.5, 1)
    assert stats.format_interval(iv) == "0.5000"
    with pytest.raises(ValueError, match="non-empty"):
        stats.interval([])


def test_paired_effect_matches_scipy_paired_t_test_and_counts_signs():
    a = {0: 0.76, 1: 0.75, 2: 0.74, 3: 0.77, 4: 0.75, 9: 0.1}  # seed 9 has no partner: left out
    b = {0: 0.75, 1: 0.755, 2: 0.73, 3: 0.76, 4: 0.74}
    effect = stats.paired(a, b)
    seeds = sorted(b)
    reference = scipy_stats.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds]).confidence_interval(0.95)
    assert effect.seeds == (0, 1, 2, 3, 4)
    assert effect.interval.low == pytest.approx(reference.low, abs=1e-12)
    assert effect.interval.high == pytest.approx(reference.high, abs=1e-12)
    assert (effect.positive, effect.negative, effect.agree) == (4, 1, 4)
    with pytest.raises(ValueError, match="same seeds"):
        stats.paired({0: 1.0}, {1: 1.0})


@pytest.mark.parametrize(
    ("a", "verdict"),
    [([0.02, 0.03, 0.025], "a > b"), ([-0.02, -0.03, -0.025], "a < b"), ([0.02, -0.03, 0.01], "cannot tell apart"),
     ([0.001, -0.002, 0.0015, 0.0005, -0.001], "equivalent within ±1 point"), ([0.02], "one seed: a preview"),
     ([0.0, 0.0], "identical on every seed"), ([0.02, 0.02], "two seeds: too few for a verdict"),
     ([0.004, 0.006, 0.005, 0.0055], "a > b")],  # a small effect is still a difference, not an equivalence
)  # fmt: skip
def test_verdict_follows_the_tests(a, verdict):
    effect = stats.paired(dict(enumerate(a)), dict.fromkeys(range(len(a)), 0.0))
    assert effect.verdict == verdict


SAMPLES = [
    ([0.76, 0.75, 0.74, 0.77, 0.75], [0.75, 0.755, 0.73, 0.76, 0.74]),
    ([0.80, 0.81, 0.79], [0.801, 0.806, 0.793]),
    ([0.70, 0.72, 0.69, 0.71, 0.70, 0.73], [0.69, 0.725, 0.70, 0.70, 0.71, 0.72]),
]


@pytest.mark.parametrize(("a", "b"), SAMPLES)
@pytest.mark.parametrize("margin", [0.005, 0.01, 0.03])
def test_tests_match_scipy_and_statsmodels(a, b, margin):
    from statsmodels.stats.weightstats import ttost_paired

    effect = stats.paired(dict(enumerate(a)), dict(enumerate(b)))
    assert effect.p_value == pytest.approx(scipy_stats.ttest_rel(a, b).pvalue, rel=1e-10)
    assert effect.equivalence_p(margin) == pytest.approx(ttost_paired(np.array(a), np.array(b), -margin, margin)[0],
                                                         rel=1e-10)  # fmt: skip


def test_holm_matches_statsmodels_and_keeps_untested_rows_out():
    from statsmodels.stats.multitest import multipletests

    p = [0.034, 0.0004, 0.027, 0.2, 0.01, 0.0049, 0.5, 0.04]
    assert stats.holm(p) == pytest.approx(list(multipletests(p, method="holm")[1]), rel=1e-12)
    adjusted = stats.holm([0.02, math.nan, 0.03])
    assert adjusted[0] == pytest.approx(0.04) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.04)


def test_a_family_drops_a_raw_verdict_that_holm_does_not_keep():
    """Three comparisons of 5 seeds: one clear gap, one at p ≈ 0.03 raw (above 0.05 / 2 once adjusted), one null
    whose differences are small enough for equivalence at ±1 point."""
    gap = stats.paired(dict(enumerate([0.05, 0.06, 0.055, 0.052, 0.058])), dict.fromkeys(range(5), 0.0))
    weak = stats.paired(dict(enumerate([0.005, 0.012, 0.0, 0.009, 0.006])), dict.fromkeys(range(5), 0.0))
    null = stats.paired(dict(enumerate([0.001, -0.002, 0.0015, 0.0005, -0.001])), dict.fromkeys(range(5), 0.0))
    judged = stats.verdicts([gap, weak, null])
    assert 0.025 < weak.p_value < 0.05 and [v.raw for v in judged] == ["a > b", "a > b", "equivalent within ±1 point"]
    assert [v.adjusted for v in judged] == ["a > b", "cannot tell apart", "equivalent within ±1 point"]
    assert judged[1].p_holm == pytest.approx(2 * weak.p_value)
    assert stats.verdicts([null], margin=0.001)[0].raw == "cannot tell apart"  # a tighter margin asks more
    with pytest.raises(ValueError, match="margin"):
        stats.verdicts([null], margin=math.nan)


def test_format_interval_in_points_and_signed():
    iv = stats.Interval(0.0123, 0.0023, 0.0223, 5)
    assert stats.format_interval(iv, points=True, signed=True, digits=2) == "+1.23 ± 1.00"
    assert stats.format_interval(stats.Interval(-0.5, -0.6, -0.4, 3)) == "-0.5000 ± 0.1000"


def _run(label, seed, acc, state_bytes=(8, 8)):
    matrix = [[acc, None], [acc, acc]]
    return {"label": label, "seed": seed, "acc": acc, "bwt": 0.0, "forgetting": 0.0, "joint_accuracy": [acc, acc],
            "state_bytes": list(state_bytes), "seconds": 2.0, "acc_matrix": matrix}  # fmt: skip


def test_summary_and_effects_of_hand_made_runs():
    full = [0.80, 0.82, 0.81]
    average = [0.79, 0.808, 0.80]
    no_post = [0.80, 0.82, 0.81]
    runs = [_run("holistic", s, v) for s, v in enumerate(full)]
    runs += [_run("average", s, v, state_bytes=(8, 16)) for s, v in enumerate(average)]
    runs += [_run("holistic −post", s, v) for s, v in enumerate(no_post)]
    rows = {r["label"]: r for r in evidence.summarize(runs)}
    assert rows["holistic"]["ACC (task mean)"].mean == pytest.approx(0.81) and rows["holistic"]["n"] == 3
    assert rows["average"]["constant memory"] is False and rows["holistic"]["constant memory"] is True
    effects = {e["other"]: e for e in evidence.effects(runs)}
    diff = np.subtract(full, average)
    assert effects["average"]["effect"].interval.mean == pytest.approx(diff.mean())
    assert effects["average"]["comparison"] == "holistic − average"
    assert effects["holistic −post"]["comparison"] == "stage post (alignment)"
    assert effects["holistic −post"]["effect"].interval.half_width == 0.0  # identical on every seed
    table = evidence.effects_table(list(effects.values()))
    assert table[0]["seeds agreeing"] == "3/3" and table[0]["verdict"] == "higher"
    assert table[0]["p ≠0"] == evidence.format_p(effects["average"]["effect"].p_value)
    assert table[1]["verdict"] == table[1]["verdict (Holm)"] == "identical on every seed" and table[1]["p ±m"] == "–"
    document = evidence.to_json(runs)
    assert document["effects"][0]["seeds"] == [0, 1, 2] and document["rows"][0]["ACC (task mean)"]["n"] == 3
    assert document["effects"][0]["p_holm"] == pytest.approx(effects["average"]["effect"].p_value)  # one tested row
    assert document["effects"][1]["p"] is None and document["margin"] == stats.MARGIN


def test_two_runs_of_one_label_and_seed_are_refused():
    with pytest.raises(ValueError, match="seed 0"):
        evidence.summarize([_run("average", 0, 0.5), _run("average", 0, 0.6)])


def test_stage_effects_of_a_hand_made_grid():
    """ACC = 0.5 + 0.1·pre + 0.02·during − 0.01·post + seed noise: the main effects come back, paired per seed."""
    import itertools

    runs = []
    for seed, noise in enumerate((0.0, 0.03, -0.02)):
        for pre, during, post in itertools.product((True, False), repeat=3):
            acc = 0.5 + 0.1 * pre + (0.02 + 0.001 * seed) * during - 0.01 * post + noise
            runs.append({**_run("x", seed, acc), "stages": {"pre": pre, "during": during, "post": post}})
    effects = {e["other"]: e["effect"] for e in evidence.stage_effects(runs)}
    assert effects["pre"].interval.mean == pytest.approx(0.1) and effects["pre"].interval.half_width < 1e-9
    assert effects["during"].interval.mean == pytest.approx(0.021) and effects["during"].verdict == "a > b"
    assert effects["post"].interval.mean == pytest.approx(-0.01) and effects["post"].negative == 3
    with pytest.raises(ValueError, match="7 of the 8"):
        evidence.stage_effects(runs[1:])
