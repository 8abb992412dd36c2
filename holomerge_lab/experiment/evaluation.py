"""How a prepared run's models are scored: the frozen head over the classes in play, logits, accuracy.

The same head choice serves training (task t's own rows, or every seen class for `joint`) and evaluation
(task-agnostic: every class seen so far); `evaluate` gives the accuracy of each seen task and of their union in
one pass. `Prepared` lives here because everything here reads it; `pipeline.prepare` builds it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..data import TaskStream
from ..method.merging import Params
from ..models.backbone import Backbone
from ..models.heads import head_logits
from .config import RunConfig

# Evaluation batch: the presets' fine-tuning batch, so that evaluating the joint test set of a long stream never
# needs more working memory than a training step does (a tangent forward over 1024 examples holds ~360 MiB more
# than over 50; at 256 the peak of a 100-task run still grew with T, because 5 short tasks never fill a batch).
EVAL_BATCH = 64


@dataclass
class Prepared:
    """What every method of a comparison shares: the stream, the backbone, θ0, trunk features and heads."""

    config: RunConfig
    stream: TaskStream
    backbone: Backbone
    theta0: Params  # the trainable parameters and the alignment bias, at their pre-trained values
    train_features: list[Tensor]
    test_features: list[Tensor]
    heads: list[Tensor]  # CIL: task t's rows (its classes); DIL: the same all-class head for every task
    center: Tensor | None

    @property
    def setting(self) -> str:
        return self.stream.setting


def head_for(prep: Prepared, tasks: Sequence[int]) -> tuple[Tensor, list[int]]:
    """The head over the classes of `tasks` (CIL: their rows, in order; DIL: the one all-class head), and the
    class id of each of its rows."""
    if prep.setting == "dil":
        return prep.heads[0], list(prep.stream.tasks[0].classes)
    return torch.cat([prep.heads[i] for i in tasks]), [c for i in tasks for c in prep.stream.tasks[i].classes]


def head_rows(prep: Prepared, classes: Sequence[int]) -> Tensor:
    """A lookup from global class id to the row of that class in a head over `classes` (-1: not in the head)."""
    index = torch.full((len(prep.stream.class_names),), -1, dtype=torch.long)
    index[torch.tensor(list(classes))] = torch.arange(len(classes))
    return index


def seen_head(prep: Prepared, t: int) -> tuple[Tensor, list[int]]:
    """The head used to evaluate after task t (0-based), and the class id of each of its rows."""
    return head_for(prep, range(t + 1))


def test_logits(
    prep: Prepared,
    forward: Callable[..., Tensor],
    params: Params,
    tasks: Sequence[int],
    *,
    batch_size: int = EVAL_BATCH,
) -> tuple[Tensor, Tensor]:
    """Logits on the joint test set of `tasks` under the head of their classes, and the labels as head rows.
    `tasks=[t]` is task t under its own head; `tasks=range(t + 1)` is the task-agnostic evaluation after task t."""
    head, classes = head_for(prep, tasks)
    index = head_rows(prep, classes)
    features = torch.cat([prep.test_features[i] for i in tasks])
    labels = index[torch.cat([prep.stream.tasks[i].test_labels for i in tasks])].to(features.device)
    with torch.no_grad():
        logits = torch.cat([
            head_logits(forward(params, features[i : i + batch_size]), head, prep.config.logit_scale, prep.center)
            for i in range(0, len(features), batch_size)
        ])  # fmt: skip
    return logits, labels


def evaluate(
    prep: Prepared, forward: Callable[..., Tensor], params: Params, upto: int, *, batch_size: int = EVAL_BATCH
) -> tuple[list[float], float]:
    """Accuracy on each task 0..upto under the head of every class seen so far (task-agnostic), and on their
    union, in one pass over the joint test set."""
    logits, labels = test_logits(prep, forward, params, range(upto + 1), batch_size=batch_size)
    correct = (logits.argmax(1) == labels).float()
    sizes = [len(t.test_labels) for t in prep.stream.tasks[: upto + 1]]
    return [float(c.mean()) for c in correct.split(sizes)], float(correct.mean())


@torch.no_grad()
def features(
    forward: Callable[..., Tensor], params: Params, inputs: Tensor, *, batch_size: int = EVAL_BATCH
) -> Tensor:
    """The model's output features on trunk features `inputs`, in batches, without gradients."""
    return torch.cat([forward(params, inputs[i : i + batch_size]) for i in range(0, len(inputs), batch_size)])
