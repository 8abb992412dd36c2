"""Frozen classification heads: a matrix of unit-norm class vectors, never trained.

A head is a plain tensor ``[n_classes, D]`` whose rows are unit vectors; `head_logits` turns embeddings into
cosine-similarity logits scaled like CLIP's logit scale. Heads of several tasks are concatenated (``torch.cat``)
into the task-agnostic all-classes head of class-incremental evaluation.

- `prototype_head`: the CPU analogue of CLIP's zero-shot head. When a task arrives, the *pre-trained* model embeds
  that task's training images; each class's mean of the normalised embeddings, re-normalised, is one row. It is
  built from that task's data only.
- (the CLIP text zero-shot head, ``zero_shot_text_head(model, tokenizer, class_names, templates)``, belongs here too:
  it returns the same kind of tensor, one normalised row per class name.)

Feature centering: pass ``center`` (e.g. the mean θ0 embedding of the first task) to both functions so that the
class vectors and the embeddings are compared after removing the shared component.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import UserError


def _centered_unit(embeddings: Tensor, center: Tensor | None) -> Tensor:
    z = embeddings if center is None else embeddings - center.to(embeddings)
    return F.normalize(z, dim=-1)


def prototype_head(
    embeddings: Tensor, labels: Tensor, classes: Sequence[int], center: Tensor | None = None
) -> Tensor:
    """[len(classes), D]: per class, the mean of the L2-normalised (embedding - center), re-normalised.

    Row i belongs to ``classes[i]``. `embeddings` are the pre-trained model's embeddings of one task's training
    images, `labels` their class ids. A class with no example is an error (its row would be undefined).
    """
    embeddings = torch.as_tensor(embeddings)
    labels = torch.as_tensor(labels).to(embeddings.device)
    if embeddings.ndim != 2 or labels.shape != embeddings.shape[:1]:
        raise UserError(
            f"prototype_head expects embeddings [N, D] and labels [N], got {tuple(embeddings.shape)} "
            f"and {tuple(labels.shape)}"
        )
    z = _centered_unit(embeddings if embeddings.is_floating_point() else embeddings.float(), center)
    classes = [int(c) for c in classes]
    cls = torch.tensor(classes, device=labels.device, dtype=labels.dtype)
    onehot = (labels.unsqueeze(0) == cls.unsqueeze(1)).to(z.dtype)  # [C, N]
    counts = onehot.sum(1)
    if (counts == 0).any():
        empty = [c for c, n in zip(classes, counts.tolist(), strict=True) if n == 0]
        raise UserError(
            f"prototype_head: no examples of class(es) {empty}; pass only classes present in labels"
        )
    means = (onehot @ z) / counts.unsqueeze(1)
    return F.normalize(means, dim=-1)


def head_logits(
    embeddings: Tensor, head: Tensor, scale: float = 32.0, center: Tensor | None = None
) -> Tensor:
    """``scale * normalize(embeddings - center) @ head.T``: a cosine classifier, like CLIP's logit scale.

    Differentiable in `embeddings` (fine-tuning backpropagates through it); the head itself stays fixed.
    """
    return scale * _centered_unit(embeddings, center) @ head.to(embeddings).T
