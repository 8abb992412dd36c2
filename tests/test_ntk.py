"""Linearity gap and empirical NTK against closed forms and a per-output autograd loop."""

import pytest
import torch
from torch import nn

from holomerge_lab.analysis.ntk import (
    empirical_ntk,
    empirical_ntk_blocks,
    linearity_along_run,
    linearity_gap,
    step_seconds,
)
from holomerge_lab.method.linearize import forward_fn


class Square(nn.Module):
    """f(x; w) = (w ⊙ x)²: its linearization misses exactly x²·(w − w0)²."""

    def __init__(self, d: int):
        super().__init__()
        self.w = nn.Parameter(torch.randn(d))

    def forward(self, x):
        return (self.w * x) ** 2


def test_linearity_gap_closed_form():
    module, x = Square(5), torch.randn(8, 5)
    theta0 = {"w": module.w.detach().clone()}
    theta = {"w": theta0["w"] + 0.3 * torch.randn(5)}
    gap = linearity_gap(forward_fn(module, theta0, False), forward_fn(module, theta0, True), theta0, theta, x)
    delta = theta["w"] - theta0["w"]
    expected_gap = (x**2 * delta**2).norm(dim=1).mean()
    expected_change = ((theta["w"] * x) ** 2 - (theta0["w"] * x) ** 2).norm(dim=1).mean()
    assert gap["gap"] == pytest.approx(float(expected_gap), rel=1e-5)
    assert gap["change"] == pytest.approx(float(expected_change), rel=1e-5)
    assert gap["weight_distance"] == pytest.approx(float(delta.norm()), rel=1e-6)


def test_linearity_gap_is_zero_for_a_linear_model():
    module, x = nn.Linear(4, 3), torch.randn(6, 4)
    theta0 = {k: v.detach().clone() for k, v in module.named_parameters()}
    theta = {k: v + 0.5 * torch.randn_like(v) for k, v in theta0.items()}
    gap = linearity_gap(forward_fn(module, theta0, False), forward_fn(module, theta0, True), theta0, theta, x)
    assert gap["gap"] < 1e-5 * gap["change"]


def test_ntk_of_a_linear_layer_closed_form():
    module, x = nn.Linear(4, 3), torch.randn(5, 4)
    params = dict(module.named_parameters())
    kernel = empirical_ntk(forward_fn(module, params, False), params, x)
    assert torch.allclose(kernel, 3 * (x @ x.T + 1), atol=1e-5)  # Σ_c (x·x' + 1) over 3 outputs


def test_ntk_matches_a_per_output_gradient_loop():
    torch.manual_seed(0)
    module, x = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 2)), torch.randn(4, 3)
    params = dict(module.named_parameters())
    kernel = empirical_ntk(forward_fn(module, params, False), params, x)
    grads = [
        [torch.cat([g.flatten() for g in torch.autograd.grad(module(x[i : i + 1])[0, c], list(params.values()))])
         for c in range(2)]
        for i in range(4)
    ]  # fmt: skip
    expected = torch.tensor(
        [[sum(float(grads[i][c] @ grads[j][c]) for c in range(2)) for j in range(4)] for i in range(4)]
    )
    assert torch.allclose(kernel, expected, atol=1e-5)


def test_step_seconds_is_a_positive_time():
    module = nn.Linear(4, 3)
    params = {k: v.detach() for k, v in module.named_parameters()}
    seconds = step_seconds(
        forward_fn(module, params, True),
        params,
        torch.randn(8, 4),
        torch.zeros(8, dtype=torch.long),
        lambda z: z,
        repeats=2,
    )
    assert 0 < seconds < float("inf")


def test_linearity_along_run_starts_at_theta0_and_matches_single_runs(small_prepared):
    import dataclasses

    from holomerge_lab.experiment.training import fine_tune_task

    prep = small_prepared
    rows = linearity_along_run(prep, 0, [2, 4])
    assert [r["steps"] for r in rows] == [0, 2, 4]
    assert rows[0]["weight_distance"] == 0 and rows[0]["gap"] < 1e-5
    model, _ = fine_tune_task(prep, 0, tangent=False, config=dataclasses.replace(prep.config, steps=4))
    forward = forward_fn(prep.backbone.top, prep.theta0, False)
    expected = linearity_gap(
        forward,
        forward_fn(prep.backbone.top, prep.theta0, True),
        prep.theta0,
        model.params,
        prep.test_features[0],
    )
    assert rows[-1] == pytest.approx({"steps": 4, **expected})


def test_ntk_blocks_predict_one_sgd_step_of_a_linear_model():
    """For a model linear in θ, one SGD step on example j moves f(x_i) by exactly −η · Θ[i, j] @ ∂ℓ/∂f(x_j)."""
    torch.manual_seed(0)
    module, x = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 3)), torch.randn(4, 3)
    theta0 = {k: v.detach().clone() for k, v in module.named_parameters()}
    forward = forward_fn(module, theta0, True)  # f_lin: linear in θ
    blocks = empirical_ntk_blocks(forward, theta0, x)
    assert torch.allclose(blocks.diagonal(dim1=2, dim2=3).sum(-1), empirical_ntk(forward, theta0, x))
    params = {k: v.clone().requires_grad_(True) for k, v in theta0.items()}
    out_j = forward(params, x[2:3])
    loss = torch.nn.functional.cross_entropy(out_j, torch.tensor([1]))
    grads = torch.autograd.grad(loss, list(params.values()))
    g_j = torch.autograd.functional.jacobian(
        lambda z: torch.nn.functional.cross_entropy(z, torch.tensor([1])), out_j.detach()
    )[0]
    lr = 0.1
    stepped = {k: theta0[k] - lr * g for k, g in zip(params, grads, strict=True)}
    with torch.no_grad():
        moved = forward(stepped, x[0:1])[0] - forward(theta0, x[0:1])[0]
    assert torch.allclose(moved, -lr * blocks[0, 2] @ g_j, atol=1e-5)


def test_shift_measurements_of_both_fine_tunings(small_prepared):
    """Each way's numbers are those of its own fine-tuned model: the distance moved, and the accuracy of the model
    it trained (f_lin for tangent), counted by hand from the head's argmax."""
    from holomerge_lab.analysis.ntk import shift_measurements
    from holomerge_lab.experiment.training import fine_tune_task
    from holomerge_lab.models.heads import head_logits

    prep = small_prepared
    got = shift_measurements(prep, 1)
    for name, tangent in (("standard", False), ("tangent", True)):
        model, _ = fine_tune_task(prep, 1, tangent=tangent)
        moved = torch.sqrt(sum((model.params[k] - prep.theta0[k]).square().sum() for k in prep.theta0))
        assert got[name]["weight_distance"] == pytest.approx(float(moved), rel=1e-5)
        with torch.no_grad():
            z = forward_fn(prep.backbone.top, prep.theta0, tangent)(model.params, prep.test_features[1])
            predicted = head_logits(z, prep.heads[1], prep.config.logit_scale).argmax(1)
        classes = torch.tensor(prep.stream.tasks[1].classes)
        truth = (prep.stream.tasks[1].test_labels[:, None] == classes).float().argmax(1)
        assert got[name]["accuracy"] == pytest.approx(float((predicted == truth).float().mean()))
    assert got["standard"]["relative_gap"] > 0


def test_kernel_change_closed_form_and_zero_for_f_lin():
    """Square's NTK is diagonal in the outputs: Θ[i, j, c, c] = 4·w_c²·x_ic²·x_jc², so moving w scales block c by
    (w'_c / w_c)². f_lin's Jacobian is J at θ0 wherever θ is: its kernel does not move at all."""
    from holomerge_lab.analysis.ntk import kernel_change

    torch.manual_seed(0)
    module, x = Square(3), torch.randn(4, 3)
    theta0 = {"w": module.w.detach().clone()}
    theta = {"w": theta0["w"] * torch.tensor([1.0, 2.0, 0.5])}
    per_output = [4 * (w**2) * torch.outer(x[:, c] ** 2, x[:, c] ** 2) for c, w in enumerate(theta0["w"])]
    before = torch.stack(per_output)
    after = torch.stack([k * s**2 for k, s in zip(per_output, (1.0, 2.0, 0.5), strict=True)])
    expected = float((after - before).norm() / before.norm())
    got = kernel_change(forward_fn(module, theta0, False), theta0, theta, x)
    assert got == pytest.approx(expected, rel=1e-5)
    assert kernel_change(forward_fn(module, theta0, True), theta0, theta, x) < 1e-6


def test_balanced_examples_takes_the_first_of_each_class():
    from holomerge_lab.analysis.ntk import balanced_examples

    labels = torch.tensor([3, 1, 3, 1, 1, 3, 3])
    assert balanced_examples(labels, [1, 3], 4).tolist() == [1, 3, 0, 2]


def test_linearity_along_line_is_the_gap_at_each_scaled_point(small_prepared):
    """Row ε is `linearity_gap` at θ0 + ε·(θ − θ0): 0 at ε = 0, the fine-tuned θ's own at ε = 1, and the relative
    gap shrinks with ε (a first-order expansion is exact to first order)."""
    from holomerge_lab.analysis.ntk import linearity_along_line
    from holomerge_lab.experiment.training import fine_tune_task

    prep = small_prepared
    model, _ = fine_tune_task(prep, 0, tangent=False)
    rows = linearity_along_line(prep, 0, model.params, [0.0, 1e-3, 1.0])
    assert [r["scale"] for r in rows] == [0.0, 1e-3, 1.0]
    assert rows[0]["weight_distance"] == 0 and rows[0]["gap"] < 1e-5
    forward, forward_lin = (forward_fn(prep.backbone.top, prep.theta0, t) for t in (False, True))
    at_theta = linearity_gap(forward, forward_lin, prep.theta0, model.params, prep.test_features[0])
    assert rows[-1] == pytest.approx({"scale": 1.0, **at_theta})
    assert rows[1]["relative_gap"] < rows[2]["relative_gap"]


def test_tangent_space_on_seeds_measures_each_seed_on_its_own_run():
    """Seed 0's rows are `linearity_along_run` on a run prepared with seed 0, its line ends at the last checkpoint's
    weights, and its kernel change is `kernel_change` at those weights; another seed is another run."""
    import dataclasses

    from conftest import small_config

    from holomerge_lab.analysis.ntk import kernel_change, tangent_space_on_seeds
    from holomerge_lab.experiment.pipeline import prepare
    from holomerge_lab.experiment.training import fine_tune_task, task_objective

    config = small_config(tasks=2, steps=3)
    got = tangent_space_on_seeds(config, 0, [1, 3], [0, 1], scales=[0.5, 1.0], ntk_examples=4)
    assert sorted(got) == [0, 1]
    prep = prepare(config, progress=False)
    for row, expected_row in zip(got[0]["run"], linearity_along_run(prep, 0, [1, 3]), strict=True):
        assert row == pytest.approx(expected_row)
    assert got[0]["line"][-1]["weight_distance"] == pytest.approx(got[0]["run"][-1]["weight_distance"])
    model, _ = fine_tune_task(prep, 0, tangent=False, config=dataclasses.replace(config, steps=3))
    logits, _, _ = task_objective(prep, 0, tangent=False)
    names = [k for k in prep.theta0 if k != prep.backbone.bias]
    labels = prep.stream.tasks[0].test_labels
    picked = torch.cat([torch.nonzero(labels == c).flatten()[:2] for c in prep.stream.tasks[0].classes])
    expected = kernel_change(logits, {k: prep.theta0[k] for k in names}, {k: model.params[k] for k in names},
                             prep.test_features[0][picked])  # fmt: skip
    assert got[0]["kernel change"] == pytest.approx(expected, rel=1e-5)
    assert got[1]["run"] != got[0]["run"]
