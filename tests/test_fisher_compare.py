"""Importance comparisons against scipy / plain Python; the task objective against the pipeline's fine-tuning."""

import math

import pytest
import torch
from scipy import stats

from holomerge_lab.analysis.fisher_compare import (
    compare_importances,
    cosine,
    merge_share,
    ranks,
    share_agreement,
    spearman,
    top_k_overlap,
)
from holomerge_lab.experiment.training import fine_tune_task, task_objective
from holomerge_lab.method.finetune import fine_tune


def test_spearman_with_ties_matches_scipy():
    torch.manual_seed(0)
    a = torch.randn(200).clamp_min(0)  # about half exact zeros: ties, as dead units give
    b = a + 0.5 * torch.rand(200) * (torch.rand(200) > 0.3)
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a.numpy(), b.numpy()).statistic, abs=1e-10)
    assert torch.allclose(
        ranks(torch.tensor([3.0, 1.0, 3.0, 2.0])), torch.tensor([3.5, 1.0, 3.5, 2.0]).double()
    )
    assert math.isnan(spearman(torch.ones(5), torch.arange(5.0)))


def test_cosine_matches_torch():
    a, b = torch.randn(3, 7), torch.randn(3, 7)
    assert cosine(a, b) == pytest.approx(
        float(torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), 0)), abs=1e-6
    )


def test_top_k_overlap_matches_sets():
    torch.manual_seed(0)
    a, b = torch.randn(1000), torch.randn(1000)
    k = 50
    expected = len(set(a.argsort()[-k:].tolist()) & set(b.argsort()[-k:].tolist())) / k
    assert top_k_overlap(a, b, 0.05) == pytest.approx(expected)
    assert top_k_overlap(a, a, 0.05) == 1.0


def test_compare_importances_rows():
    a = {"x": torch.rand(10, 3), "y": torch.rand(4)}
    rows = compare_importances(a, {"x": 2 * a["x"]}, fraction=0.2)
    assert [r["parameter"] for r in rows] == ["x"]
    assert rows[0]["spearman"] == pytest.approx(1.0) and rows[0]["cosine"] == pytest.approx(1.0)
    assert rows[0]["top-k overlap"] == 1.0 and rows[0]["scale ratio"] == pytest.approx(0.5)


@pytest.mark.parametrize("tangent", [False, True])
def test_task_objective_reproduces_fine_tune_task(small_prepared, tangent):
    prep = small_prepared
    model, losses = fine_tune_task(prep, 1, tangent=tangent)
    logits, inputs, rows = task_objective(prep, 1, tangent=tangent)
    config = prep.config.resolve()
    start = {k: v for k, v in prep.theta0.items() if k != prep.backbone.bias}
    again = fine_tune(
        logits, start, inputs, rows, lambda z: z, steps=config.steps, lr=config.lr, batch_size=config.batch_size,
        seed=config.seed + 1000,
    )  # fmt: skip
    assert again.losses == pytest.approx(losses)
    for k, v in again.params.items():
        assert torch.allclose(v, model.params[k], atol=1e-6)


def test_task_importances_are_the_fisher_and_v_of_the_fine_tuned_model(small_prepared):
    from holomerge_lab.analysis.fisher_compare import task_importances
    from holomerge_lab.method.finetune import bias_corrected
    from holomerge_lab.method.fisher import functional_diagonal_fisher

    prep = small_prepared
    model, found = task_importances(prep, 0, tangent=False, kinds=("true", "empirical"), examples=8)
    again, _ = fine_tune_task(prep, 0, tangent=False)
    logits, inputs, rows = task_objective(prep, 0, tangent=False)
    trained = {k: again.params[k] for k in again.second_moment}
    expected = functional_diagonal_fisher(logits, trained, inputs[:8], rows[:8], "empirical")
    assert set(found) == {"true", "empirical", "v raw", "v corrected"}
    for k in trained:
        assert torch.allclose(found["empirical"][k], expected[k], rtol=1e-4, atol=1e-12)
        assert torch.equal(found["v raw"][k], again.second_moment[k])
        corrected = bias_corrected(again.second_moment, again.beta2, again.steps)[k]
        assert torch.allclose(found["v corrected"][k], corrected)


def test_setting_measurements_merge_the_two_task_models(small_prepared):
    """The merge accuracies are the two tangent task models merged by hand: raw v as weights, and the plain mean."""
    import dataclasses

    from holomerge_lab.analysis.fisher_compare import setting_measurements, task_importances
    from holomerge_lab.experiment.evaluation import evaluate
    from holomerge_lab.method.linearize import forward_fn

    prep = small_prepared
    config = dataclasses.replace(prep.config, beta2=0.99)
    got = setting_measurements(prep, config, examples=8)
    (a, fa), (b, fb) = (task_importances(prep, t, config=config, kinds=("true",), examples=8) for t in (0, 1))
    forward = forward_fn(prep.backbone.top, prep.theta0, tangent=True)
    mean = {k: (a.params[k] + b.params[k]) / 2 for k in a.params}
    w = {k: fa["v raw"][k] + fb["v raw"][k] for k in fa["v raw"]}
    by_hand = {k: torch.where(w[k] > 0, (fa["v raw"][k] * a.params[k] + fb["v raw"][k] * b.params[k]) / w[k], mean[k])
               if k in w else mean[k] for k in a.params}  # fmt: skip  (no v anywhere: the plain mean)
    assert got["v-weighted merge acc"] == pytest.approx(evaluate(prep, forward, by_hand, 1)[1], abs=1e-6)
    assert got["average merge acc"] == pytest.approx(evaluate(prep, forward, mean, 1)[1], abs=1e-6)
    rows = compare_importances(fa["v corrected"], fa["true"])
    assert got["mean ρ (v vs true)"] == pytest.approx(sum(r["spearman"] for r in rows) / len(rows))
    assert got["examples seen"] == config.resolve().steps * config.resolve().batch_size
    w = {k: fa["true"][k] + fb["true"][k] for k in fa["true"]}
    by_fisher = {k: torch.where(w[k] > 0, (fa["true"][k] * a.params[k] + fb["true"][k] * b.params[k]) / w[k], mean[k])
                 if k in w else mean[k] for k in a.params}  # fmt: skip
    assert got["true-Fisher merge acc"] == pytest.approx(evaluate(prep, forward, by_fisher, 1)[1], abs=1e-6)
    # the same steps on both tasks: the bias correction scales both v by one factor, and the merge does not move
    assert got["v-corrected merge acc"] == pytest.approx(got["v-weighted merge acc"], abs=1e-6)
    assert got["share ρ (v vs true)"] == pytest.approx(
        share_agreement(fa["v raw"], fb["v raw"], fa["true"], fb["true"]))


def test_merge_share_is_the_share_the_merge_moves_each_coordinate_by():
    from holomerge_lab.method.merging import fisher_weighted_merge

    torch.manual_seed(0)
    prev, new = {"w": torch.randn(50)}, {"w": torch.randn(50)}
    f_prev, f_new = {"w": torch.rand(50)}, {"w": torch.rand(50)}
    f_prev["w"][:5] = 0
    f_new["w"][:5] = 0  # a dead unit: no weight on either side, the merge falls back to α
    for alpha in (0.3, 0.5):
        share = merge_share(f_prev, f_new, alpha)["w"]
        merged, _ = fisher_weighted_merge(prev, new, f_prev, f_new, alpha)
        assert torch.allclose(prev["w"] + share.float() * (new["w"] - prev["w"]), merged["w"], atol=1e-6)
        assert torch.all(share[:5] == alpha)
        expected = alpha * f_new["w"][5:] / ((1 - alpha) * f_prev["w"][5:] + alpha * f_new["w"][5:])
        assert torch.allclose(share[5:].float(), expected, atol=1e-6)


def test_share_agreement_can_be_low_where_the_ranks_within_a_task_agree():
    """A factor both tasks share (an input's scale) dominates each task's ranking but cancels in the share."""
    torch.manual_seed(0)
    common = torch.exp(3 * torch.randn(4000))
    f_a, f_b, v_a, v_b = ({"w": common * (0.5 + torch.rand(4000))} for _ in range(4))
    assert spearman(v_a["w"], f_a["w"]) > 0.9  # ranked alike within the task
    assert abs(share_agreement(v_a, v_b, f_a, f_b)) < 0.1  # but the split between the tasks is unrelated
    assert share_agreement(f_a, f_b, f_a, f_b) == pytest.approx(1.0)
    scaled = {"w": 7 * f_a["w"]}, {"w": 7 * f_b["w"]}  # one scale for both tasks: the same shares
    assert share_agreement(*scaled, f_a, f_b) == pytest.approx(1.0)
