"""One task's fine-tuning, standard or in the tangent space, with AdamW.

It returns what the rest of the method needs and nothing else: the trained parameters θ(t), Adam's second moment
v(t) (the stage-2 merge weight, read straight from the optimizer) and the loss history.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import UserError

Forward = Callable[..., Tensor]  # (params, inputs) -> embeddings, see linearize.forward_fn


@dataclass
class FineTuneResult:
    params: dict[str, Tensor]  # θ(t)
    second_moment: dict[str, Tensor]  # Adam's exp_avg_sq: raw, no bias correction, no ε
    steps: int
    beta2: float
    losses: list[float] = field(default_factory=list)


def second_moment(optimizer: torch.optim.Optimizer, params: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Adam's v for each named parameter, exactly as the optimizer holds it (the authors' read-out)."""
    return {
        name: optimizer.state[p]["exp_avg_sq"].detach().clone()
        for name, p in params.items()
        if "exp_avg_sq" in optimizer.state.get(p, {})
    }


def bias_corrected(v: Mapping[str, Tensor], beta2: float, steps: int) -> dict[str, Tensor]:
    """v / (1 − β2^k): the unbiased estimate of E[g²] that Adam itself divides by."""
    scale = 1.0 / (1.0 - beta2**steps)
    return {name: value * scale for name, value in v.items()}


def lr_factor(step: int, steps: int, warmup_steps: int, cosine: bool) -> float:
    """Linear warm-up, then constant or cosine decay to zero (the authors' schedule)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if not cosine:
        return 1.0
    progress = (step - warmup_steps) / max(1, steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def batches(size: int, batch_size: int, steps: int, seed: int) -> Iterator[Tensor]:
    """`steps` index batches drawn without replacement, reshuffled each epoch, reproducible from `seed`."""
    generator = torch.Generator().manual_seed(seed)
    batch_size = min(batch_size, size)
    order, position = torch.randperm(size, generator=generator), 0
    for _ in range(steps):
        if position + batch_size > size:
            order, position = torch.randperm(size, generator=generator), 0
        yield order[position : position + batch_size]
        position += batch_size


def fine_tune(
    forward: Forward,
    start: Mapping[str, Tensor],
    inputs: Tensor,
    labels: Tensor,
    classify: Callable[[Tensor], Tensor],
    *,
    steps: int,
    lr: float,
    batch_size: int = 64,
    weight_decay: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    grad_clip: float | None = None,
    warmup_steps: int = 0,
    cosine: bool = False,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
    penalty: Callable[[dict[str, Tensor]], Tensor] | None = None,
    augment: Callable[[Tensor, Tensor, int], Tensor] | None = None,
) -> FineTuneResult:
    """Train `start` (a copy of it) for `steps` AdamW steps of cross-entropy on `classify(forward(params, x))`.

    `forward` decides standard vs tangent fine-tuning (linearize.forward_fn); `classify` is the frozen head over
    the current task's classes, `labels` index its rows. A fresh optimizer per task, as in the authors' code.
    `penalty(params)`, if given, is added to the loss (e.g. `ewc_penalty`); the recorded losses include it.
    `augment(inputs, indices, step)`, if given, turns each batch into its training view (e.g. random crops).
    """
    params = {name: value.detach().clone().requires_grad_(True) for name, value in start.items()}
    optimizer = torch.optim.AdamW(params.values(), lr=lr, betas=betas, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, steps, warmup_steps, cosine)
    )
    losses = []
    for step, batch in enumerate(batches(len(inputs), batch_size, steps, seed)):
        x = inputs[batch] if augment is None else augment(inputs[batch], batch, step)
        loss = F.cross_entropy(classify(forward(params, x)), labels[batch])
        if penalty is not None:
            loss = loss + penalty(params)
        if not torch.isfinite(loss):
            raise UserError(
                f"fine-tuning diverged at step {step} (loss {loss.item()}); lower the learning rate "
                f"(now {lr:g}) or set a gradient clip"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params.values(), grad_clip)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if progress is not None:
            progress(1)
    check_finite("fine-tuning", params, f"lower the learning rate (now {lr:g}) or set a gradient clip")
    return FineTuneResult(
        params={name: p.detach() for name, p in params.items()},
        second_moment=second_moment(optimizer, params),
        steps=steps,
        beta2=betas[1],
        losses=losses,
    )


def check_finite(what: str, params: Mapping[str, Tensor], fix: str) -> None:
    """Refuse to hand on a model with a non-finite parameter: one NaN makes every later merge and score NaN."""
    bad = [name for name, value in params.items() if not bool(torch.isfinite(value).all())]
    if bad:
        raise UserError(f"{what} diverged: {', '.join(bad[:3])} hold NaN or infinity; {fix}")


def ewc_penalty(
    anchor: Mapping[str, Tensor], fisher: Mapping[str, Tensor], strength: float
) -> Callable[[Mapping[str, Tensor]], Tensor]:
    """Elastic weight consolidation (Kirkpatrick et al. 2017): λ/2 · Σ F̄ ⊙ (θ − θ*)², summed over the parameters
    that have a Fisher. It keeps θ near the previous model θ* where the old tasks' Fisher F̄ says θ mattered."""

    def penalty(params: Mapping[str, Tensor]) -> Tensor:
        return 0.5 * strength * sum(((params[k] - anchor[k]).square() * fisher[k]).sum() for k in fisher)

    return penalty
