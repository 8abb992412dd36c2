"""The method's equations as the few lines a reader can hold: one function per stage, each at most 15 lines.

The production functions (`linearize.linearized_forward`, `finetune.fine_tune`, `merging.fisher_weighted_merge`,
`align.align`) add what a reader need not hold: argument checks, schedules, progress, divergence checks, the zero-
weight coordinates the authors' code turns into NaN. The notebooks print these beside them, and
`tests/test_teaching_versions.py` checks on random inputs that each gives the production function's numbers.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call, jvp

Params = dict[str, Tensor]


def linearized_forward(module: torch.nn.Module, theta0: Params, theta: Params, x: Tensor) -> Tensor:
    """Stage 1's model: f_lin(x; θ) = f(x; θ0) + J f(x; θ0)·(θ − θ0), one forward-mode pass (jvp)."""
    names = list(theta0)

    def f(*values: Tensor) -> Tensor:
        return functional_call(module, dict(zip(names, values, strict=True)), (x,))

    out, out_dot = jvp(f, tuple(theta0[n] for n in names), tuple(theta[n] - theta0[n] for n in names))
    return out + out_dot


def fine_tune(forward: Callable, start: Params, batches: list[tuple[Tensor, Tensor]], lr: float) -> tuple[Params, Params]:
    """AdamW on cross-entropy, one step per (x, y) batch; returns θ(t) and Adam's v(t) = β2·v + (1 − β2)·g²."""
    params = {n: p.detach().clone().requires_grad_(True) for n, p in start.items()}
    optimizer = torch.optim.AdamW(params.values(), lr=lr, weight_decay=0.0)
    for x, y in batches:
        optimizer.zero_grad()
        F.cross_entropy(forward(params, x), y).backward()
        optimizer.step()
    v = {n: optimizer.state[p]["exp_avg_sq"].clone() for n, p in params.items()}
    return {n: p.detach() for n, p in params.items()}, v


def v_weighted_merge(theta_bar: Params, f_bar: Params, theta: Params, v: Params, alpha: float) -> tuple[Params, Params]:
    """Stage 2, element-wise: θ̄(t) = [(1−α)F̄·θ̄ + α v·θ] / [(1−α)F̄ + α v], and F̄(t) = (1−α)F̄ + α v."""
    merged, carried = {}, {}
    for k in theta_bar:
        w_old, w_new = (1 - alpha) * f_bar[k], alpha * v[k]
        merged[k] = (w_old * theta_bar[k] + w_new * theta[k]) / (w_old + w_new)
        carried[k] = w_old + w_new
    return merged, carried


def align(forward: Callable, params: Params, name: str, teacher: Tensor, x: Tensor, lr: float, steps: int) -> Params:
    """Stage 3: train params[name] alone so that forward(params, x) matches the teacher's features (MSE, AdamW)."""
    trained = params[name].detach().clone().requires_grad_(True)
    optimizer = torch.optim.AdamW([trained], lr=lr, weight_decay=0.0)
    for _ in range(steps):
        optimizer.zero_grad()
        F.mse_loss(forward({**params, name: trained}, x), teacher).backward()
        optimizer.step()
    return {**params, name: trained.detach()}

