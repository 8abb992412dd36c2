"""The diagonal Fisher and Adam's v against independent computations."""

import dataclasses

import pytest
import torch
from torch import nn
from tqdm.auto import tqdm

from holomerge_lab.experiment import training
from holomerge_lab.method import fisher as fisher_module
from holomerge_lab.method.finetune import bias_corrected, fine_tune
from holomerge_lab.method.fisher import KINDS, diagonal_fisher, exact_routes, functional_diagonal_fisher
from holomerge_lab.method.linearize import forward_fn, linearized_forward


def softmax_regression(seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    model = nn.Linear(5, 3).double()
    x = torch.randn(40, 5, dtype=torch.float64)
    return model, x, torch.randint(0, 3, (40,))


def mlp(seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    return model, torch.randn(30, 4, dtype=torch.float64), torch.randint(0, 3, (30,))


def per_example_loop(model: nn.Module, x: torch.Tensor, labels_per_example) -> dict[str, torch.Tensor]:
    """Reference: one backward per (example, class) with autograd, weighted as given."""
    total = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for i in range(len(x)):
        for label, weight in labels_per_example(i):
            model.zero_grad()
            torch.log_softmax(model(x[i : i + 1]), -1)[0, label].backward()
            for n, p in model.named_parameters():
                total[n] += weight * p.grad.square()
    return {n: v / len(x) for n, v in total.items()}


def test_true_fisher_equals_closed_form_for_softmax_regression():
    model, x, _ = softmax_regression()
    fisher = diagonal_fisher(model, x, kind="true", chunk_size=7)
    p = torch.softmax(model(x), -1).detach()
    # ∂ log p_c / ∂W = (e_c − p) xᵀ, so Σ_c p_c (e_c − p)_k² x_j² = p_k (1 − p_k) x_j² (since Σ_c p_c (δ_ck − p_k)² = p_k(1 − p_k))
    variance = p * (1 - p)
    torch.testing.assert_close(fisher["weight"], (variance.T @ x.square()) / len(x))
    torch.testing.assert_close(fisher["bias"], variance.mean(0))


def test_true_fisher_equals_a_per_example_loop_on_a_nonlinear_model():
    model, x, _ = mlp()
    probs = torch.softmax(model(x), -1).detach()
    expected = per_example_loop(model, x, lambda i: [(c, probs[i, c].item()) for c in range(3)])
    fisher = diagonal_fisher(model, x, kind="true", chunk_size=8)
    for n in expected:
        torch.testing.assert_close(fisher[n], expected[n])


def test_empirical_fisher_equals_a_per_example_loop():
    model, x, y = mlp(1)
    expected = per_example_loop(model, x, lambda i: [(int(y[i]), 1.0)])
    fisher = diagonal_fisher(model, x, y, kind="empirical")
    for n in expected:
        torch.testing.assert_close(fisher[n], expected[n])


def test_sampled_fisher_approaches_true_fisher():
    model, x, _ = softmax_regression(2)
    x = x.repeat(100, 1)  # many label draws per input
    true = diagonal_fisher(model, x[:40], kind="true")
    few = diagonal_fisher(model, x[:40], kind="sampled", seed=0)
    many = diagonal_fisher(model, x, kind="sampled", seed=0)

    def error(f):
        return sum((f[n] - true[n]).norm() for n in true) / sum(true[n].norm() for n in true)

    assert error(many) < 0.1 < error(few)
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            many.values(), diagonal_fisher(model, x, kind="sampled", seed=0).values(), strict=False
        )
    )


class PooledTokens(nn.Module):
    """A weight applied at every position, then the positions averaged: its pairs-of-positions route sums cross terms."""

    def __init__(self):
        super().__init__()
        self.tokens, self.head = nn.Linear(6, 8, bias=False), nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.tokens(x).mean(1))


@pytest.mark.parametrize("kind", ["true", "empirical"])
def test_a_fisher_that_cancels_to_zero_is_never_negative(kind):
    """Positions that sum to zero give the token weight a zero gradient on every example; in float32 the pairs of
    positions cancel only up to rounding, and a Fisher below zero is refused by the Fisher merge: it must stay ≥ 0."""
    torch.manual_seed(0)
    model = PooledTokens()
    x = torch.randn(64, 3, 6)
    x[:, 2] = -(x[:, 0] + x[:, 1])
    fisher = diagonal_fisher(model, x, torch.randint(0, 3, (64,)), kind)
    assert exact_routes(model, x)["tokens.weight"] == "linear"
    assert (fisher["tokens.weight"] >= 0).all() and fisher["tokens.weight"].max() < 1e-6
    assert fisher["head.weight"].min() > 0


def test_frozen_parameters_are_skipped():
    model, x, _ = mlp()
    model[0].requires_grad_(False)
    assert set(diagonal_fisher(model, x[:5])) == {"2.weight", "2.bias"}


def test_empirical_needs_labels():
    model, x, _ = mlp()
    with pytest.raises(ValueError, match="labels"):
        diagonal_fisher(model, x, kind="empirical")


def test_adam_second_moment_equals_a_hand_computed_ema():
    model, x, y = mlp(3)
    theta0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    beta2, steps = 0.95, 5
    result = fine_tune(
        forward_fn(model, theta0, tangent=False),
        theta0,
        x,
        y,
        lambda z: z,
        steps=steps,
        lr=1e-2,
        batch_size=len(x),
        betas=(0.9, beta2),
        seed=4,
    )
    # The same full-batch steps with a hand-written Adam: an EMA of squared gradients, and the AdamW update.
    params = {n: v.clone().requires_grad_(True) for n, v in theta0.items()}
    m = {n: torch.zeros_like(v) for n, v in theta0.items()}
    v = {n: torch.zeros_like(p) for n, p in theta0.items()}
    for k in range(1, steps + 1):
        loss = nn.functional.cross_entropy(torch.func.functional_call(model, params, (x,)), y)
        grads = torch.autograd.grad(loss, list(params.values()))
        with torch.no_grad():
            for (n, p), grad in zip(params.items(), grads, strict=False):
                m[n] = 0.9 * m[n] + 0.1 * grad
                v[n] = beta2 * v[n] + (1 - beta2) * grad.square()
                p -= 1e-2 * (m[n] / (1 - 0.9**k)) / ((v[n] / (1 - beta2**k)).sqrt() + 1e-8)
    for n in v:
        torch.testing.assert_close(result.second_moment[n], v[n])
        torch.testing.assert_close(result.params[n], params[n].detach())
    corrected = bias_corrected(result.second_moment, beta2, steps)
    for n in v:
        torch.testing.assert_close(corrected[n], v[n] / (1 - beta2**steps))


@pytest.mark.parametrize("kind", KINDS)
def test_pipeline_fisher_equals_the_per_example_route(small_prepared, kind, monkeypatch):
    """The fisher / ewc methods' Fisher (op by op through the top and the frozen head, never per example) against
    the reference route on the same fine-tuned parameters and the same seeded subsample."""
    prep = small_prepared
    config = dataclasses.replace(prep.config, method="fisher", fisher_kind=kind, fisher_examples=12).resolve()
    forward = forward_fn(prep.backbone.top, prep.theta0, tangent=False)

    def refused(*args, **kwargs):
        raise AssertionError("the pipeline's Fisher took the per-example route")

    with tqdm(disable=True) as bar, monkeypatch.context() as patch:
        patch.setattr(fisher_module, "_per_example_fisher", refused)
        task, _ = training.train_task(prep, config, forward, prep.theta0, 1, bar, 7, fisher=True)
    logits, inputs, rows = training.task_objective(prep, 1, tangent=False)
    subset = torch.randperm(len(inputs), generator=torch.Generator().manual_seed(7))[:12]
    trained = {n: task.params[n] for n in task.fisher}
    assert set(trained) == set(prep.backbone.trainable)
    bias = {prep.backbone.bias: prep.theta0[prep.backbone.bias]}
    routes = exact_routes(prep.backbone.top, inputs[subset], params=trained, constants=bias)
    assert set(routes.values()) == {"conv2d"}
    expected = functional_diagonal_fisher(
        logits, trained, inputs[subset], rows[subset], kind, chunk_size=16, seed=7
    )
    largest = max(float(v.abs().max()) for v in expected.values())
    for n in expected:
        torch.testing.assert_close(task.fisher[n], expected[n], rtol=1e-4, atol=1e-6 * largest)


class TiedTwice(nn.Module):
    """One layer applied twice: its weight has no single op, so it goes per example."""

    def __init__(self):
        super().__init__()
        self.a, self.head = nn.Linear(4, 4), nn.Linear(4, 3)

    def forward(self, x):
        return self.head(torch.tanh(self.a(torch.tanh(self.a(x)))))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("build", [lambda: mlp()[0], lambda: TiedTwice().double()], ids=["op by op", "mixed"])
def test_tangent_fisher_equals_the_per_example_route_of_the_tangent_model(build, kind):
    """A tangent model's Fisher from passes at θ0 with p from its own logits, against per-example Jacobians of the
    linearized function itself (float64), on a model going all op by op and one with a parameter per example."""
    torch.manual_seed(1)
    model = build()
    theta0 = {n: p.detach() for n, p in model.named_parameters()}
    theta = {n: p + 0.3 * torch.randn_like(p) for n, p in theta0.items()}  # far enough that p(θ) ≠ p(θ0)
    x, y = torch.randn(13, 4, dtype=torch.float64), torch.randint(0, 3, (13,))

    def tangent(p, v):
        return linearized_forward(model, theta0, p, v)

    expected = functional_diagonal_fisher(tangent, theta, x, y, kind, chunk_size=5)
    ours = diagonal_fisher(
        model, x, y, kind, params=theta0, chunk_size=5, tangent_outputs=lambda v: tangent(theta, v)
    )
    at_theta0 = diagonal_fisher(model, x, y, kind, chunk_size=5)
    largest = max(float(v.abs().max()) for v in expected.values())
    for n in expected:
        torch.testing.assert_close(ours[n], expected[n], rtol=1e-10, atol=1e-12 * largest)
    if kind != "empirical":  # p enters the true and sampled Fisher directly; the empirical one through δ
        assert any(not torch.allclose(at_theta0[n], expected[n]) for n in expected)


@pytest.mark.parametrize("kind", ["true", "empirical"])
def test_task_fisher_of_a_tangent_task_model_goes_op_by_op(small_prepared, kind, monkeypatch):
    """Notebook 03's Fisher of a tangent-trained task model (through the top and the frozen head, never per
    example) against per-example Jacobians of the tangent objective `task_objective` gives."""
    prep = small_prepared
    model, _ = training.fine_tune_task(prep, 0, tangent=True)
    trained = {k: v for k, v in model.params.items() if k in model.second_moment}
    logits, inputs, rows = training.task_objective(prep, 0, tangent=True)
    expected = functional_diagonal_fisher(logits, trained, inputs[:12], rows[:12], kind, chunk_size=16)
    with monkeypatch.context() as patch:
        patch.setattr(
            fisher_module, "_per_example_fisher", lambda *a, **k: pytest.fail("took the per-example route")
        )
        ours = training.task_fisher(prep, 0, trained, inputs[:12], rows[:12], kind, tangent=True)
    largest = max(float(v.abs().max()) for v in expected.values())
    for n in expected:
        torch.testing.assert_close(ours[n], expected[n], rtol=1e-4, atol=1e-6 * largest)
