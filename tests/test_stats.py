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
    [([0.02, 0.03, 0.025], "a > b"), ([-0.02, -0.03, -0.025], "a < b"), ([0.02, -0.03, 0.01], "unclear (CI spans 0)"),
     ([0.02], "one seed: a preview"), ([0.0, 0.0], "identical on every seed"),
     ([0.02, 0.02], "two seeds: too few for a verdict")],
)  # fmt: skip
def test_verdict_follows_the_interval(a, verdict):
    effect = stats.paired(dict(enumerate(a)), dict.fromkeys(range(len(a)), 0.0))
    assert effect.verdict == verdict


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
    document = evidence.to_json(runs)
    assert document["effects"][0]["seeds"] == [0, 1, 2] and document["rows"][0]["ACC (task mean)"]["n"] == 3


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
