"""How linear is the real network, and what does its tangent space look like?

- `linearity_gap`: f(x; θ) against its Taylor expansion f_lin(x; θ) around θ0 at the same θ. Near θ0 they agree;
  the gap grows as fine-tuning moves θ away. Tangent fine-tuning trains f_lin itself, so for it the gap is the
  price of the approximation, not an error.
- `empirical_ntk_blocks`: the C×C block Θ_cd(x, x') = ⟨∂f_c(x)/∂θ, ∂f_d(x')/∂θ⟩ at θ0, the kernel that f_lin's
  training follows; `empirical_ntk`: its trace over the C outputs.
- `linearity_along_run`: the gap after k steps of standard fine-tuning on a prepared task, for growing k.
- `step_seconds`: the time of one training step, to compare a tangent step (forward + jvp) with a plain one.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import jacrev, vmap

from ..experiment.config import RunConfig
from ..experiment.evaluation import Prepared, test_logits
from ..experiment.training import fine_tune_task
from ..method.linearize import forward_fn

Params = dict[str, Tensor]
Forward = Callable[..., Tensor]  # (params, inputs) -> outputs


def linearity_gap(
    forward: Forward,
    forward_lin: Forward,
    theta0: Mapping[str, Tensor],
    theta: Mapping[str, Tensor],
    inputs: Tensor,
) -> dict[str, float]:
    """Distances at θ between the network and its linearization around θ0, averaged over `inputs`:

    - weight_distance: ‖θ − θ0‖ (all parameters together)
    - change: E‖f(x; θ) − f(x; θ0)‖, how far fine-tuning moved the outputs
    - gap: E‖f(x; θ) − f_lin(x; θ)‖, the part of that move the linear model misses
    - relative_gap: gap / change (0: perfectly linear; ~1: the linear model misses the move entirely)
    """
    with torch.no_grad():
        f0 = forward(dict(theta0), inputs)
        f = forward(dict(theta), inputs)
        f_lin = forward_lin(dict(theta), inputs)
    change = float((f - f0).norm(dim=-1).mean())
    gap = float((f - f_lin).norm(dim=-1).mean())
    weight_distance = float(torch.sqrt(sum((theta[k] - theta0[k]).square().sum() for k in theta0)))
    return {
        "weight_distance": weight_distance,
        "change": change,
        "gap": gap,
        "relative_gap": gap / change if change > 0 else 0.0,
    }


def empirical_ntk_blocks(forward: Forward, params: Mapping[str, Tensor], inputs: Tensor) -> Tensor:
    """[N, N, C, C] the full empirical NTK of `forward(params, x)` (outputs [B, C]) at `params`:
    Θ[i, j, c, d] = Σ_θ ∂f_c(x_i)/∂θ · ∂f_d(x_j)/∂θ. A gradient step on example j alone changes the outputs at x_i,
    to first order, by −η · Θ[i, j] @ ∂ℓ/∂f(x_j): a C×C block times a C-vector, not one number.
    Memory is N × C × parameters: keep N and C small."""
    params = {k: v.detach() for k, v in params.items()}

    def one(p: Params, x: Tensor) -> Tensor:
        return forward(p, x.unsqueeze(0)).squeeze(0)

    jac = vmap(jacrev(one), in_dims=(None, 0))(params, inputs)  # name -> [N, C, *shape]
    flat = torch.cat([j.flatten(2) for j in jac.values()], dim=2)  # [N, C, P]
    return torch.einsum("icp,jdp->ijcd", flat, flat)


def empirical_ntk(forward: Forward, params: Mapping[str, Tensor], inputs: Tensor) -> Tensor:
    """[N, N] the trace of each C×C block of `empirical_ntk_blocks`: Θ[i, j] = Σ_c Σ_θ ∂f_c(x_i)/∂θ · ∂f_c(x_j)/∂θ.
    It summarises how strongly two examples' outputs move together; it says how one step moves another example's
    prediction only when the blocks are close to a multiple of the identity."""
    return empirical_ntk_blocks(forward, params, inputs).diagonal(dim1=2, dim2=3).sum(-1)


def step_seconds(
    forward: Forward,
    params: Mapping[str, Tensor],
    inputs: Tensor,
    labels: Tensor,
    classify: Callable[[Tensor], Tensor],
    *,
    repeats: int = 5,
) -> float:
    """Median wall time of one training step's forward and backward (cross-entropy on `classify(forward(…))`),
    after one warm-up step. The optimizer update is left out: it costs the same for both models."""
    params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    times = []
    for _ in range(repeats + 1):
        began = time.perf_counter()
        loss = F.cross_entropy(classify(forward(params, inputs)), labels)
        torch.autograd.grad(loss, list(params.values()))
        times.append(time.perf_counter() - began)
    return float(torch.tensor(times[1:]).median())


def linearity_along_run(
    prep: Prepared, t: int, checkpoints: Sequence[int], *, config: RunConfig | None = None
) -> list[dict[str, float]]:
    """`linearity_gap` of task t's standard fine-tuning after each number of steps in `checkpoints` (one run per
    checkpoint, same seed and batches: with a constant learning rate each is the first k steps of the longest),
    on task t's test features. The first row is θ0 itself (0 steps)."""
    config = config or prep.config
    forward = forward_fn(prep.backbone.top, prep.theta0, tangent=False)
    forward_lin = forward_fn(prep.backbone.top, prep.theta0, tangent=True)
    inputs = prep.test_features[t]
    rows = [{"steps": 0, **linearity_gap(forward, forward_lin, prep.theta0, prep.theta0, inputs)}]
    for steps in checkpoints:
        model, _ = fine_tune_task(
            prep, t, tangent=False, config=dataclasses.replace(config, steps=int(steps))
        )
        rows.append(
            {"steps": int(steps), **linearity_gap(forward, forward_lin, prep.theta0, model.params, inputs)}
        )
    return rows


def shift_measurements(
    prep: Prepared, t: int, *, config: RunConfig | None = None
) -> dict[str, dict[str, float]]:
    """Task t fine-tuned from θ0 both ways (`config`'s settings): per way, how far the weights moved (‖θ − θ0‖),
    the real network's `linearity_gap` at those weights on task t's test images, and the accuracy of the model as
    it was trained (f for standard, f_lin for tangent) on task t under its own head: does the linear model learn
    less where the network has to move further?"""
    forward = forward_fn(prep.backbone.top, prep.theta0, tangent=False)
    forward_lin = forward_fn(prep.backbone.top, prep.theta0, tangent=True)
    out = {}
    for name, tangent in (("standard", False), ("tangent", True)):
        model, _ = fine_tune_task(prep, t, tangent=tangent, config=config)
        gap = linearity_gap(forward, forward_lin, prep.theta0, model.params, prep.test_features[t])
        logits, labels = test_logits(prep, forward_lin if tangent else forward, model.params, [t])
        out[name] = {**gap, "accuracy": float((logits.argmax(1) == labels).float().mean())}
    return out
