"""f_lin against independent computations: f itself at θ0, exact linearity, a finite-difference Taylor term, and
FusionBench's `LinearizedModelWraper` (the peer library's f_lin), bit for bit."""

import sys
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

from holomerge_lab.method.linearize import LinearizedModel, forward_fn, linearized_forward

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
from fusion_bench_peer import linearized_wrapper  # noqa: E402


class TinyAttention(nn.Module):
    """A small non-linear net with scaled-dot-product attention, the op forward-mode AD is fussy about."""

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, tokens, dim]
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        h = nn.functional.scaled_dot_product_attention(q, k, v)
        return torch.tanh(self.out(h)).mean(1)


def make(seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(seed)
    return TinyAttention().double(), torch.randn(5, 4, 8, dtype=torch.float64)


def random_direction(params: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {n: torch.randn(p.shape, generator=g, dtype=p.dtype) for n, p in params.items()}


def test_at_theta0_equals_f():
    model, x = make()
    lin = LinearizedModel(model)
    torch.testing.assert_close(lin(x), model(x), rtol=0, atol=1e-12)


def test_exactly_linear_in_theta_minus_theta0():
    model, x = make()
    theta0 = {n: p.detach() for n, p in model.named_parameters()}
    tau, sigma = random_direction(theta0, 1), random_direction(theta0, 2)
    f0 = model(x).detach()

    def f_lin(a: float, b: float) -> torch.Tensor:
        theta = {n: theta0[n] + a * tau[n] + b * sigma[n] for n in theta0}
        return linearized_forward(model, theta0, theta, x)

    expected = f0 + 0.7 * (f_lin(1, 0) - f0) - 1.3 * (f_lin(0, 1) - f0)
    torch.testing.assert_close(f_lin(0.7, -1.3), expected, rtol=1e-10, atol=1e-10)


def test_first_order_term_matches_central_finite_difference():
    model, x = make()
    theta0 = {n: p.detach() for n, p in model.named_parameters()}
    tau = random_direction(theta0, 3)
    h = 1e-5

    def f_at(scale: float) -> torch.Tensor:
        return functional_call(model, {n: theta0[n] + scale * tau[n] for n in theta0}, (x,))

    finite_difference = (f_at(h) - f_at(-h)) / (2 * h)
    jvp_term = linearized_forward(model, theta0, {n: theta0[n] + tau[n] for n in theta0}, x) - f_at(0)
    torch.testing.assert_close(jvp_term, finite_difference, rtol=1e-6, atol=1e-8)


def test_gradients_reach_theta_only():
    model, x = make()
    lin = LinearizedModel(model)
    lin(x).sum().backward()
    assert all(p.grad is not None for p in lin.model.parameters())
    assert all(not p.requires_grad for p in lin.model0.parameters())


def test_frozen_parameters_are_not_linearized():
    model, x = make()
    model.out.bias.requires_grad_(False)
    lin = LinearizedModel(model)
    assert "out.bias" not in lin.names
    torch.testing.assert_close(lin(x), model(x), rtol=0, atol=1e-12)


def test_forward_fn_tangent_and_standard_agree_at_theta0():
    model, x = make()
    theta0 = {n: p.detach() for n, p in model.named_parameters()}
    standard = forward_fn(model, theta0, tangent=False)(theta0, x)
    tangent = forward_fn(model, theta0, tangent=True)(theta0, x)
    torch.testing.assert_close(standard, tangent, rtol=0, atol=1e-12)


def test_equals_fusion_bench_linearized_wrapper_on_attention():
    model, x = make()
    theta0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    theta = {n: theta0[n] + 0.1 * d for n, d in random_direction(theta0, 4).items()}
    peer = linearized_wrapper(model, theta0, theta)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH):  # forward-mode AD needs the MATH attention in theirs too
        expected = peer(x)
    assert torch.equal(linearized_forward(model, theta0, theta, x), expected)


def test_equals_fusion_bench_linearized_wrapper_on_the_embedded_top(small_prepared):
    top = small_prepared.backbone.top
    theta0 = {n: p.detach().clone() for n, p in top.named_parameters()}
    theta = {n: theta0[n] + 1e-2 * d for n, d in random_direction(theta0, 5).items()}
    x = small_prepared.test_features[0][:16]
    with torch.no_grad():
        expected = linearized_wrapper(top, theta0, theta)(x)
        ours = forward_fn(top, theta0, tangent=True)(theta, x)
    assert torch.equal(ours, expected)
