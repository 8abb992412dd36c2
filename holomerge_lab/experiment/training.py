"""One task's fine-tuning and one merge's alignment, on a prepared run: the calls `pipeline.run` makes per task.

`train_task` fine-tunes against the task's frozen head (evaluation.py chooses it), with open_clip's random crops
when `augment` is set (`training_views`); `task_inputs` is everything that decides it, the task cache's key.
`fine_tune_task` and `task_objective` expose one task alone to the analyses (loss barriers, NTK, Fisher).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..method.align import align
from ..method.finetune import fine_tune
from ..method.fisher import diagonal_fisher
from ..method.linearize import forward_fn
from ..method.merging import Params, TaskModel
from ..models.heads import head_logits
from .config import RunConfig
from .evaluation import Prepared, features, head_for, head_rows, seen_head


def train_task(
    prep: Prepared,
    config: RunConfig,
    forward,
    start: Params,
    t: int | None,
    bar,
    seed: int,
    *,
    penalty: Callable[[Params], Tensor] | None = None,
    fisher: bool = False,
) -> tuple[TaskModel, list[float]]:
    """Fine-tune on task t (or, t=None, on all tasks at once for `joint`) against its frozen head, adding
    `penalty(params)` to the loss if given; with `fisher`, also take the diagonal Fisher of the result on a seeded
    subsample of `config.fisher_examples` training examples."""
    tasks = range(len(prep.stream.tasks)) if t is None else [t]
    features = torch.cat([prep.train_features[i] for i in tasks])
    labels = torch.cat([prep.stream.tasks[i].train_labels for i in tasks])
    head, classes = (
        seen_head(prep, max(tasks)) if t is None else (prep.heads[t], prep.stream.tasks[t].classes)
    )
    index = head_rows(prep, classes)
    steps = config.steps or config.epochs * math.ceil(len(features) / config.batch_size)
    steps *= len(tasks)
    bias = {prep.backbone.bias: start[prep.backbone.bias]}
    trainable = {n: v for n, v in start.items() if n != prep.backbone.bias}
    task_forward = lambda p, x: forward({**p, **bias}, x)  # noqa: E731
    classify = lambda z: head_logits(z, head, config.logit_scale, prep.center)  # noqa: E731
    result = fine_tune(
        task_forward, trainable, features, index[labels].to(features.device), classify,
        steps=steps, lr=config.lr, batch_size=config.batch_size, weight_decay=config.weight_decay,
        betas=(0.9, config.beta2), grad_clip=config.grad_clip, warmup_steps=config.warmup_steps,
        cosine=config.cosine, seed=seed, progress=bar.update, penalty=penalty,
        augment=training_views(prep, config, list(tasks), seed),
    )  # fmt: skip
    information = None
    if fisher:
        subset = torch.randperm(len(features), generator=torch.Generator().manual_seed(seed))
        subset = subset[: config.fisher_examples]
        information = diagonal_fisher(  # the fisher and ewc methods fine-tune standard (pre=False): a module
            prep.backbone.top, features[subset], index[labels][subset], config.fisher_kind, params=result.params,
            constants=bias, head=classify, chunk_size=16, seed=seed,
        )  # fmt: skip
    return TaskModel(
        {**result.params, **bias}, result.second_moment, result.steps, result.beta2, information
    ), result.losses


def training_views(
    prep: Prepared, config: RunConfig, tasks: Sequence[int], seed: int
) -> Callable[[Tensor, Tensor, int], Tensor] | None:
    """With `config.augment`: (batch, indices, step) -> open_clip's random training crops of that batch of the
    concatenated training images of `tasks` (boxes drawn on each file's geometry, seeded by `seed` and the step,
    so every epoch sees new crops and a rerun the same ones). None without augmentation."""
    if not config.augment:
        return None
    parts = [prep.stream.tasks[i].train_sizes for i in tasks]
    sizes = None if any(p is None for p in parts) else torch.cat(parts)

    def view(x: Tensor, indices: Tensor, step: int) -> Tensor:
        step_seed = int(np.random.SeedSequence([seed, step]).generate_state(1)[0])
        return prep.backbone.training_view(x, None if sizes is None else sizes[indices.cpu()], step_seed)

    return view


def fine_tune_task(
    prep: Prepared, t: int, *, tangent: bool, config: RunConfig | None = None, start: Params | None = None
) -> tuple[TaskModel, list[float]]:
    """Task t's model alone, fine-tuned from `start` (θ0 by default), standard or tangent, with `config`'s
    settings (the prepared run's by default): the unit that the analyses take apart (loss barriers, linearity,
    Fisher against Adam's v)."""
    config = (config or prep.config).resolve()
    forward = forward_fn(prep.backbone.top, prep.theta0, tangent=tangent)
    with tqdm(disable=True) as bar:
        return train_task(
            prep, config, forward, prep.theta0 if start is None else start, t, bar, config.seed + 1000 * t
        )


def task_objective(
    prep: Prepared, t: int, *, tangent: bool
) -> tuple[Callable[[Params, Tensor], Tensor], Tensor, Tensor]:
    """Task t as its fine-tuning sees it: `logits(params, features)` through the top (standard or tangent around
    θ0) and task t's frozen head, its training features, and its labels as head rows. `params` may leave out the
    alignment bias (θ0's is used), so the Fisher of exactly the fine-tuned parameters can be taken through it."""
    forward = forward_fn(prep.backbone.top, prep.theta0, tangent=tangent)
    bias = {prep.backbone.bias: prep.theta0[prep.backbone.bias]}
    head, classes = head_for(prep, [t])
    index = head_rows(prep, classes)

    def logits(params: Params, x: Tensor) -> Tensor:
        return head_logits(forward({**bias, **params}, x), head, prep.config.logit_scale, prep.center)

    return logits, prep.train_features[t], index[prep.stream.tasks[t].train_labels]


def task_fisher(
    prep: Prepared, t: int, params: Params, inputs: Tensor, labels: Tensor, kind: str, *, tangent: bool
) -> dict[str, Tensor]:
    """The diagonal Fisher of task t's objective (as `task_objective` has it) at `params`, the fine-tuned parameters
    without the alignment bias, op by op through the top and the frozen head (`fisher.diagonal_fisher`). A tangent
    model's Jacobian is the top's at θ0: the passes run at θ0, with the tangent top's outputs as the head's input."""
    head, _ = head_for(prep, [t])
    bias = {prep.backbone.bias: prep.theta0[prep.backbone.bias]}
    forward = forward_fn(prep.backbone.top, prep.theta0, tangent=tangent)
    return diagonal_fisher(
        prep.backbone.top, inputs, labels, kind, params={n: prep.theta0[n] for n in params} if tangent else params,
        constants=bias, head=lambda z: head_logits(z, head, prep.config.logit_scale, prep.center), chunk_size=16,
        tangent_outputs=(lambda x: forward({**bias, **params}, x)) if tangent else None,
    )  # fmt: skip


def align_task(prep: Prepared, config: RunConfig, forward, merged: Params, teacher: Params, t: int) -> Params:
    """Stage 3 on task t's training images (no labels): pull the merged model's features to the teacher's."""
    inputs = prep.train_features[t]
    seed = config.seed + 7919 * t
    views = training_views(prep, config, [t], seed)
    # with augmentation the teacher sees each batch's crops, as in the authors' loop; else its features once
    target = (lambda x: forward(teacher, x)) if views is not None else features(forward, teacher, inputs)
    parameter = prep.backbone.bias if config.align_parameter == "bias" else prep.backbone.projection
    steps = config.align_steps or math.ceil(len(inputs) / config.batch_size)
    return align(
        forward, merged, target, inputs, parameter=parameter, loss=config.align_loss, steps=steps,
        lr=config.align_lr, batch_size=config.batch_size, seed=seed, weight_decay=config.align_weight_decay,
        grad_clip=config.align_grad_clip, augment=views,
    )  # fmt: skip


# The settings `train_task` reads, besides the data and the start point
TRAINING_FIELDS = (
    "backbone", "image_size", "trainable_from", "pretrained", "device", "precision", "steps", "epochs", "lr",
    "batch_size", "weight_decay", "beta2", "grad_clip", "warmup_steps", "cosine", "logit_scale", "augment",
)  # fmt: skip


def task_inputs(prep: Prepared, config: RunConfig, start: Params, t: int, fisher: bool) -> dict:
    """Everything that decides fine-tuning task t from `start` (the task cache's key)."""
    task = prep.stream.tasks[t]
    return {
        "features": prep.train_features[t], "labels": task.train_labels, "classes": list(task.classes),
        "head": prep.heads[t], "center": prep.center, "theta0": prep.theta0, "start": start, "tangent": config.pre,
        "seed": config.seed + 1000 * t, "settings": {f: getattr(config, f) for f in TRAINING_FIELDS},
        "fisher": [config.fisher_kind, config.fisher_examples] if fisher else None,
    }  # fmt: skip
