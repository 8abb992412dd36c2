"""probes: the α curve and the alignment trace measure the very models `pipeline.run` produces."""

import dataclasses

import numpy as np
import pytest
import torch.nn.functional as F
from conftest import small_config

from holomerge_lab.analysis.probes import (
    AlignmentStep,
    DriftTrace,
    _old_indices,
    alignment_trace,
    alpha_curve,
    by_seed,
    discrepancy_trend,
    feature_drift,
    lag_means,
    lag_rows,
    plasticity,
    step_embedding,
)
from holomerge_lab.analysis.tsne import joint_tsne
from holomerge_lab.errors import UserError
from holomerge_lab.experiment.pipeline import run


def test_alpha_curve_endpoints_agree_and_the_middle_is_the_runs_merge():
    config = small_config(alpha=0.5)
    curve = alpha_curve(config, [0.0, 0.5, 1.0])
    v, plain = curve.task_accuracy["v-weighted"], curve.task_accuracy["interpolate"]
    assert v[0] == plain[0] and v[2] == plain[2]  # α=0: θ(1); α=1: θ(2), whatever the weights
    reference = run(dataclasses.replace(config, tasks=2, post=False), progress=False)
    np.testing.assert_allclose(v[1], reference.acc_matrix[1], atol=1e-6)
    assert curve.joint_accuracy["v-weighted"][1] == pytest.approx(reference.joint_accuracy[1], abs=1e-6)
    with pytest.raises(UserError, match="α"):
        alpha_curve(config, [1.5])


def test_alignment_trace_measures_the_runs_models(small_prepared):
    config = small_config(align_steps=5)
    steps = alignment_trace(config, small_prepared, keep=(2,))
    assert [s.task for s in steps] == [1, 2]
    assert steps[0].features == {} and set(steps[1].features) == {"old", "new"}
    reference = run(config, small_prepared, progress=False)
    assert [s.accuracy["aligned"] for s in steps] == pytest.approx(reference.joint_accuracy[1:], abs=1e-6)
    kept = steps[1]
    for data in ("old", "new"):
        out = kept.features[data]
        assert len(out["merged"]) == len(kept.labels[data])
        for model in ("merged", "aligned"):  # the teacher is the previous merged model (the default)
            expected = float(F.mse_loss(out[model], out["previous"]))
            assert kept.discrepancy[data][model]["mse"] == pytest.approx(expected, rel=1e-5)


def test_without_alignment_nothing_is_removed(small_prepared):
    steps = alignment_trace(small_config(post=False), small_prepared)
    for step in steps:
        assert step.discrepancy["new"]["aligned"] == step.discrepancy["new"]["merged"]
        assert step.reduction("old", "mse") == 0.0
        assert step.accuracy["aligned"] == step.accuracy["merged"]


def test_old_data_subsample_is_even_and_bounded():
    assert _old_indices(5, 10).tolist() == [0, 1, 2, 3, 4]
    assert _old_indices(101, 5).tolist() == [0, 25, 50, 75, 100]


def test_step_embedding_is_the_joint_tsne_of_the_chosen_classes(small_prepared):
    step = alignment_trace(small_config(), small_prepared, keep=(1,))[0]
    classes = [int(step.labels["new"][0])]
    coords, labels = step_embedding(step, classes, perplexity=30, seed=1)
    assert set(coords) == {
        f"{m}/new" for m in ("previous", "merged", "aligned")
    }  # the old task lacks the class
    chosen = step.labels["new"] == classes[0]
    expected = joint_tsne(
        {k: step.features["new"][k.split("/")[0]][chosen] for k in coords}, perplexity=30, seed=1
    )
    for k in coords:
        np.testing.assert_array_equal(coords[k], expected[k])
        assert set(labels[k]) == set(classes)
    with pytest.raises(UserError, match="none of the classes"):
        step_embedding(step, [999])
    with pytest.raises(UserError, match="keep"):
        step_embedding(alignment_trace(small_config(), small_prepared)[0])


def test_discrepancy_trend_is_the_least_squares_slope():
    def step(t, value):
        return AlignmentStep(t, {"old": {"merged": {"mse": value}}}, {})

    steps = [step(1, 1.0), step(2, 3.0), step(4, 7.0)]  # exactly 2·t − 1
    assert discrepancy_trend(steps) == pytest.approx((2.0, 1.0, 7.0))
    with pytest.raises(UserError, match="two merges"):
        discrepancy_trend(steps[:1])


def test_ema_shares_closed_forms():
    from holomerge_lab.analysis.probes import ema_shares

    fixed = ema_shares([0.4] * 6)
    assert fixed[1:] == pytest.approx([0.4 * 0.6 ** (5 - j) for j in range(1, 6)])
    assert fixed[0] == pytest.approx(0.6**5) and fixed.sum() == pytest.approx(1.0)
    assert ema_shares([1 / (t + 1) for t in range(7)]) == pytest.approx([1 / 7] * 7)


def test_feature_drift_is_measured_against_each_tasks_own_reference(small_prepared):
    """drift[t][j] by hand: replay the run, keep the served models, compare their features on task j."""
    from holomerge_lab.experiment.evaluation import features
    from holomerge_lab.experiment.pipeline import run
    from holomerge_lab.method.align import feature_discrepancy

    prep = small_prepared
    trace = feature_drift(prep.config, prep, loss="cosine")
    served = []
    run(prep.config, prep, progress=False, observe=lambda m: served.append((m.forward, m.aligned)))
    n = len(prep.stream.tasks)
    assert np.isnan(trace.drift[np.triu_indices(n, 1)]).all() and (np.diag(trace.drift) == 0).all()
    forward, last = served[-1]
    for j in range(n - 1):
        ref = features(served[j][0], served[j][1], prep.test_features[j])
        expected = feature_discrepancy(features(forward, last, prep.test_features[j]), ref, "cosine")
        assert trace.drift[n - 1][j] == pytest.approx(expected, rel=1e-5, abs=1e-8)
    lag = trace.at_lag()
    assert lag[0] == 0 and lag[-1] == pytest.approx(trace.drift[n - 1][0])


def _trace(drift_by_lag, accuracy=0.5, post=True):
    """A drift matrix whose entry at lag k is drift_by_lag[k] on every task (and a constant accuracy matrix)."""
    n = len(drift_by_lag)
    drift = np.full((n, n), np.nan)
    for t in range(n):
        for j in range(t + 1):
            drift[t][j] = drift_by_lag[t - j]
    acc = np.where(np.isnan(drift), np.nan, accuracy)
    return DriftTrace("mse", drift, acc, post)


def test_lag_means_are_the_means_of_the_subdiagonals():
    matrix = np.array([[1.0, np.nan, np.nan], [2.0, 3.0, np.nan], [4.0, 5.0, 6.0]])
    assert lag_means(matrix) == pytest.approx([(1 + 3 + 6) / 3, (2 + 5) / 2, 4.0])


def test_drift_summaries_mean_slope_and_accuracy_by_lag():
    trace = _trace([0.0, 1.0, 3.0, 5.0], accuracy=0.8)  # pairs: lag 1 ×3, lag 2 ×2, lag 3 ×1
    assert trace.at_lag() == pytest.approx([0, 1, 3, 5])
    assert trace.accuracy_at_lag() == pytest.approx([0.8] * 4)
    assert trace.mean_drift() == pytest.approx((3 * 1 + 2 * 3 + 5) / 6)
    lags, values = np.array([1, 1, 1, 2, 2, 3]), np.array([1, 1, 1, 3, 3, 5])
    assert trace.slope() == pytest.approx(np.polyfit(lags, values, 1)[0])  # every pair one point
    assert _trace([0.0, 2.0, 2.0]).slope() == pytest.approx(0.0)  # a bounded drift: flat
    with pytest.raises(UserError, match="three tasks"):
        _trace([0.0, 1.0]).slope()


def test_lag_rows_give_mean_and_interval_over_seeds():
    traces = {"on": {0: _trace([0, 1, 2]), 1: _trace([0, 3, 4])}, "off": {0: _trace([0, 1, 2], accuracy=0.6)}}
    rows = lag_rows(traces, [1, 2], digits=2)
    assert [r["lag k"] for r in rows] == [1, 2]
    assert rows[0]["drift: on"].startswith("2.00 ± ") and rows[1]["drift: off"] == "2.00"
    assert rows[0]["R[j+k][j]: off"] == "0.60"


def test_by_seed_pairs_a_panels_runs_by_seed(small_prepared):
    tangent = run(small_config(), small_prepared, progress=False)
    standard = run(small_config(pre=False), small_prepared, progress=False)
    again = dataclasses.replace(tangent, seed=tangent.seed + 1)
    runs = [tangent, standard, again]
    assert by_seed(runs, plasticity, pre=True) == {
        tangent.seed: pytest.approx(np.mean(np.diag(tangent.acc_matrix))),
        again.seed: pytest.approx(np.mean(np.diag(tangent.acc_matrix))),
    }
    assert by_seed(runs, lambda r: r.acc, pre=False, stream="split-digits") == {standard.seed: standard.acc}
    assert by_seed(runs, plasticity, stream="permuted-mnist") == {}
    later = dataclasses.replace(standard, acc_matrix=standard.acc_matrix * 0)
    assert by_seed([standard, later], plasticity, pre=False) == {standard.seed: 0.0}  # a later run replaces
