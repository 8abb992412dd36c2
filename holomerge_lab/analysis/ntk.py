"""How linear is the real network, and what does its tangent space look like?

- `linearity_gap`: f(x; θ) against its Taylor expansion f_lin(x; θ) around θ0 at the same θ. Near θ0 they agree;
  the gap grows as fine-tuning moves θ away. Tangent fine-tuning trains f_lin itself, so for it the gap is the
  price of the approximation, not an error.
- `empirical_ntk_blocks`: the C×C block Θ_cd(x, x') = ⟨∂f_c(x)/∂θ, ∂f_d(x')/∂θ⟩ at θ0, the kernel that f_lin's
  training follows; `empirical_ntk`: its trace over the C outputs.
- `linearity_along_run`: the gap after k steps of standard fine-tuning on a prepared task, for growing k;
  `linearity_along_line`: the gap at θ0 + ε·(θ − θ0) for shrinking ε, where the first-order model must hold.
- `kernel_change`: how far the empirical NTK moved between θ0 and a fine-tuned θ ("lazy" training: barely).
- `tangent_space_on_seeds`: all of these for one task on several seeds, what notebook 01 reads its verdicts from.
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
from ..experiment.pipeline import prepare
from ..experiment.training import fine_tune_task, task_objective
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
    return _along_run(prep, t, checkpoints, config)[0]


def _along_run(
    prep: Prepared, t: int, checkpoints: Sequence[int], config: RunConfig | None
) -> tuple[list[dict[str, float]], Params]:
    """`linearity_along_run`'s rows and the weights of its last checkpoint."""
    config = config or prep.config
    forward = forward_fn(prep.backbone.top, prep.theta0, tangent=False)
    forward_lin = forward_fn(prep.backbone.top, prep.theta0, tangent=True)
    inputs = prep.test_features[t]
    rows = [{"steps": 0, **linearity_gap(forward, forward_lin, prep.theta0, prep.theta0, inputs)}]
    last: Params = dict(prep.theta0)
    for steps in checkpoints:
        model, _ = fine_tune_task(
            prep, t, tangent=False, config=dataclasses.replace(config, steps=int(steps))
        )
        rows.append(
            {"steps": int(steps), **linearity_gap(forward, forward_lin, prep.theta0, model.params, inputs)}
        )
        last = model.params
    return rows, last


def linearity_along_line(
    prep: Prepared, t: int, theta: Mapping[str, Tensor], scales: Sequence[float]
) -> list[dict[str, float]]:
    """`linearity_gap` at θ0 + ε·(θ − θ0) for each ε in `scales`, on task t's test features: the same direction
    as a fine-tuning run, at any distance. A Taylor expansion is exact to first order, so the relative gap must
    shrink towards 0 as ε does; where it is still large, the weights have left the region where f_lin describes
    the network. Each row also holds its `scale`."""
    forward = forward_fn(prep.backbone.top, prep.theta0, tangent=False)
    forward_lin = forward_fn(prep.backbone.top, prep.theta0, tangent=True)
    rows = []
    for eps in scales:
        point = {k: prep.theta0[k] + float(eps) * (theta[k] - prep.theta0[k]) for k in prep.theta0}
        rows.append({"scale": float(eps), **linearity_gap(forward, forward_lin, prep.theta0, point,
                                                          prep.test_features[t])})  # fmt: skip
    return rows


def kernel_change(
    forward: Forward, theta0: Mapping[str, Tensor], theta: Mapping[str, Tensor], inputs: Tensor
) -> float:
    """‖Θ(θ) − Θ(θ0)‖ / ‖Θ(θ0)‖ (Frobenius, over every C×C block of `empirical_ntk_blocks` on `inputs`): how far
    the empirical NTK of `forward` moved during fine-tuning. In the "lazy" regime (Jacot et al.; Lee et al.) it
    barely moves, and the network trains like its linearization; a large value says it did not."""
    names = list(theta0)
    before = empirical_ntk_blocks(forward, {k: theta0[k] for k in names}, inputs)
    after = empirical_ntk_blocks(forward, {k: theta[k] for k in names}, inputs)
    return float((after - before).norm() / before.norm())


def balanced_examples(labels: Tensor, classes: Sequence[int], n: int) -> Tensor:
    """Indices of the first n // len(classes) examples of each class in `labels`, class by class: a small set for
    the kernel's heat map whose blocks line up with the classes."""
    order = torch.argsort(labels, stable=True)
    return torch.cat([order[labels[order] == c][: n // len(classes)] for c in classes])


def tangent_space_on_seeds(
    config: RunConfig,
    t: int,
    checkpoints: Sequence[int],
    seeds: Sequence[int],
    *,
    scales: Sequence[float],
    ntk_examples: int,
) -> dict[int, dict]:
    """Notebook 01's measurements on each seed (its own data subsets and mini-batches): "run", the rows of
    `linearity_along_run`; "line", `linearity_along_line` towards the last checkpoint's weights; "kernel change",
    `kernel_change` of the task head's logits between θ0 and those weights on `ntk_examples` test images (half
    of each class). Seed -> that dict, so each quantity is read as seed -> value over the same seeds."""
    out = {}
    for seed in seeds:
        prep = prepare(dataclasses.replace(config, seed=seed), progress=False)
        rows, last = _along_run(prep, t, checkpoints, None)
        logits, _, _ = task_objective(prep, t, tangent=False)
        trained = [k for k in prep.theta0 if k != prep.backbone.bias]
        task = prep.stream.tasks[t]
        picked = balanced_examples(task.test_labels, task.classes, ntk_examples)
        out[int(seed)] = {
            "run": rows,
            "line": linearity_along_line(prep, t, last, scales),
            "kernel change": kernel_change(logits, {k: prep.theta0[k] for k in trained}, {k: last[k] for k in trained},
                                           prep.test_features[t][picked]),
        }  # fmt: skip
    return out


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
