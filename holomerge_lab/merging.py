"""Stage 2: merge rules as pure functions on parameter dicts, and the state each carries between tasks.

A continual merge rule has one signature:

    rule(carried, task, settings) -> carried

`carried` is everything the rule keeps from one task to the next (a dict of parameter dicts; "merged" is the model
served after the task), `task` is what fine-tuning on the new task produced. The pre-trained θ0 is kept by every
method and lives in `settings`. A new rule is one small function added to `MERGE_RULES`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from .errors import UserError
from .finetune import bias_corrected

Params = dict[str, Tensor]
Carried = dict[str, Params]


@dataclass(frozen=True)
class TaskModel:
    """One task's fine-tuning output, as a merge rule sees it."""

    params: Params  # θ(t)
    second_moment: Params  # Adam's v(t), raw
    steps: int
    beta2: float


@dataclass(frozen=True)
class MergeSettings:
    theta0: Params
    task_index: int  # t, counting from 1
    alpha: float = 0.4  # weight of the new task (authors' default)
    scale: float = 0.3  # λ of task arithmetic
    eps: float = 0.0  # added to both merge weights ("clean" variant); 0 = the authors' rule
    bias_correct: bool = False  # divide v by (1 − β2^k) ("clean" variant)


def interpolate(prev: Mapping[str, Tensor], new: Mapping[str, Tensor], alpha: float) -> Params:
    """(1 − α)·prev + α·new, key by key."""
    return {k: torch.lerp(prev[k], new[k], alpha) for k in prev}


def fisher_weighted_merge(
    prev: Mapping[str, Tensor],
    new: Mapping[str, Tensor],
    prev_weight: Mapping[str, Tensor],
    new_weight: Mapping[str, Tensor],
    alpha: float,
    eps: float = 0.0,
) -> tuple[Params, Params]:
    """The stage-2 rule of the paper, element-wise:

        F̄(t) = (1 − α)·F̄(t−1) + α·v(t)
        θ̄(t) = [(1 − α)·(F̄(t−1)+ε)·θ̄(t−1) + α·(v(t)+ε)·θ(t)] / [(1 − α)·(F̄(t−1)+ε) + α·(v(t)+ε)]

    With ε = 0 this is exactly the authors' code. Keys without weights fall back to (1 − α, α) interpolation, and so
    do single coordinates whose weights are both zero (a unit no task's gradient ever reached, e.g. a dead ReLU6
    channel): the authors' code turns them into 0/0 = NaN. Returns (θ̄(t), F̄(t)); F̄(t) never includes ε.
    Negative or NaN weights are refused: they are not second moments.
    """
    merged, carried_weight = {}, {}
    for k in prev:
        if k not in prev_weight or k not in new_weight:
            merged[k] = torch.lerp(prev[k], new[k], alpha)
            continue
        if not bool((prev_weight[k] >= 0).all() and (new_weight[k] >= 0).all()):
            raise UserError(
                f"merge weights of {k!r} contain negative or NaN values; they must be second moments "
                "(check that fine-tuning produced finite gradients: lower the learning rate or clip gradients)"
            )
        w_prev = (1 - alpha) * (prev_weight[k] + eps)
        w_new = alpha * (new_weight[k] + eps)
        total = w_prev + w_new
        weighted = (w_prev * prev[k] + w_new * new[k]) / total.clamp_min(torch.finfo(total.dtype).tiny)
        merged[k] = torch.where(total > 0, weighted, torch.lerp(prev[k], new[k], alpha))
        carried_weight[k] = (1 - alpha) * prev_weight[k] + alpha * new_weight[k]
    return merged, carried_weight


def _task_weight(task: TaskModel, settings: MergeSettings) -> Params:
    if not settings.bias_correct:
        return task.second_moment
    return bias_corrected(task.second_moment, task.beta2, task.steps)


def merge_v_weighted(carried: Carried | None, task: TaskModel, settings: MergeSettings) -> Carried:
    """The holistic merge: weight each coordinate by Adam's v. Carries θ̄ and F̄ (Θ(1))."""
    weight = _task_weight(task, settings)
    if carried is None:  # the first task is kept whole; its v starts F̄
        return {"merged": dict(task.params), "weight": dict(weight)}
    merged, carried_weight = fisher_weighted_merge(
        carried["merged"], task.params, carried["weight"], weight, settings.alpha, settings.eps
    )
    return {"merged": merged, "weight": carried_weight}


def merge_interpolate(carried: Carried | None, task: TaskModel, settings: MergeSettings) -> Carried:
    """Plain continual interpolation θ̄(t) = (1 − α)·θ̄(t−1) + α·θ(t). Carries θ̄."""
    if carried is None:
        return {"merged": dict(task.params)}
    return {"merged": interpolate(carried["merged"], task.params, settings.alpha)}


def merge_average(carried: Carried | None, task: TaskModel, settings: MergeSettings) -> Carried:
    """Continual weight averaging: θ̄(t) = θ̄(t−1) + (θ(t) − θ̄(t−1)) / t, the mean of all task models."""
    if carried is None:
        return {"merged": dict(task.params)}
    return {"merged": interpolate(carried["merged"], task.params, 1.0 / settings.task_index)}


def merge_task_arithmetic(carried: Carried | None, task: TaskModel, settings: MergeSettings) -> Carried:
    """θ0 + λ·Σ τ with τ(t) = θ(t) − θ0. θ̄ itself is the running sum (θ̄ − θ0 = λ·Σ τ), so it carries θ̄ only."""
    base = settings.theta0 if carried is None else carried["merged"]
    return {
        "merged": {k: base[k] + settings.scale * (task.params[k] - settings.theta0[k]) for k in task.params}
    }


def merge_sequential(carried: Carried | None, task: TaskModel, settings: MergeSettings) -> Carried:
    """No merge: the new task's model replaces the old one (the lower bound on forgetting)."""
    return {"merged": dict(task.params)}


MergeRule = Callable[[Carried | None, TaskModel, MergeSettings], Carried]

MERGE_RULES: dict[str, MergeRule] = {
    "v-weighted": merge_v_weighted,
    "interpolate": merge_interpolate,
    "average": merge_average,
    "task-arithmetic": merge_task_arithmetic,
    "sequential": merge_sequential,
}
