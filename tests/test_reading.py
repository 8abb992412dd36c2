"""The sentences that answer a notebook's predictions, on both outcomes: each verdict from the same tests as the
tables (analysis/stats.py), with its interval."""

import pytest

from holomerge_lab.analysis import reading, stats

HIGH = [0.81, 0.83, 0.82]
LOW = [0.72, 0.74, 0.725]
NEAR = [0.8105, 0.8296, 0.8201]
NOISY = [0.86, 0.79, 0.80]


def test_a_clear_difference_is_higher_or_lower_with_its_interval():
    said = reading.difference(HIGH, LOW, "holistic", "zero-shot")
    effect = stats.paired(dict(enumerate(HIGH)), dict(enumerate(LOW)))
    assert said.startswith(f"holistic − zero-shot = +{100 * effect.interval.mean:.2f} points ± ")
    assert "3/3 agree" in said and said.endswith("holistic is higher than zero-shot.")
    assert reading.difference(LOW, HIGH, "average", "holistic").endswith("average is lower than holistic.")


def test_a_detected_difference_inside_the_margin_says_it_is_too_small_to_matter():
    said = reading.difference([0.801, 0.811, 0.8205], [0.800, 0.8101, 0.8196], "aligned", "plain", predicted="higher")
    assert "aligned is higher than plain, by less than ±1.00 points (equivalent within that margin too" in said
    assert said.endswith("The prediction (higher) holds.")
    assert "by less than" not in reading.difference(HIGH, LOW, "holistic", "zero-shot")


def test_no_difference_is_equivalence_or_cannot_tell_never_equal():
    assert "equivalent within ±1.00 points" in reading.difference(NEAR, HIGH, "aligned", "plain")
    said = reading.difference(NOISY, HIGH, "tangent", "standard")
    assert "cannot tell tangent and standard apart" in said and "not evidence that they are equal" in said


def test_a_prediction_is_judged_on_both_outcomes():
    assert reading.difference(HIGH, LOW, "a", "b", predicted="higher").endswith("The prediction (higher) holds.")
    assert reading.difference(HIGH, LOW, "a", "b", predicted="lower").endswith("(lower) does not hold.")
    assert reading.difference(NOISY, HIGH, "a", "b", predicted="higher").endswith("is not decided by these seeds.")
    assert reading.difference(NEAR, HIGH, "a", "b", predicted="equivalent").endswith("(equivalent) holds.")
    with pytest.raises(ValueError, match="prediction"):
        reading.difference(HIGH, LOW, "a", "b", predicted="bigger")


def test_one_seed_is_a_preview_and_raw_numbers_keep_their_units():
    assert "a preview, not a verdict" in reading.difference([0.8], [0.7], "a", "b")
    said = reading.difference([9.1, 9.3, 9.2], [6.8, 6.9, 7.0], "‖τ tangent‖", "‖τ standard‖", points=False, margin=0.5)
    assert "= +2.300 ± " in said and "‖τ tangent‖ is higher" in said


def test_a_level_is_above_below_or_undecided_against_its_bound():
    assert reading.level([0.92, 0.95, 0.90], "relative linearity gap", 0.5).endswith("above 0.500.")
    assert reading.level([0.01, 0.02, 0.015], "barrier", 0.1).endswith("below 0.100.")
    assert "cannot tell it from 0.100" in reading.level([0.0, 0.3, 0.05], "barrier", 0.1)
    assert reading.level([0.0, 0.0, 0.0], "barrier", 0.0).endswith("exactly 0.000 on every seed.")
    assert "a preview" in reading.level([0.4], "x", 0.5)
