"""Frozen classification heads: a matrix of unit-norm class vectors, never trained.

A head is a plain tensor ``[n_classes, D]`` whose rows are unit vectors; `head_logits` turns embeddings into
cosine-similarity logits scaled like CLIP's logit scale. Heads of several tasks are concatenated (``torch.cat``)
into the task-agnostic all-classes head of class-incremental evaluation.

- `prototype_head`: the CPU analogue of CLIP's zero-shot head. When a task arrives, the *pre-trained* model embeds
  that task's training images; each class's mean of the normalised embeddings, re-normalised, is one row. It is
  built from that task's data only.
- `zero_shot_text_head`: CLIP's own zero-shot head. Each class name is written into every prompt template, the
  text tower embeds the prompts, and the class row is the mean of the normalised prompt embeddings, re-normalised
  (the CLIP paper's prompt ensembling, as in the authors' code). Built from class names alone, never trained.

Feature centering: pass ``center`` (e.g. the mean θ0 embedding of the first task) to both functions so that the
class vectors and the embeddings are compared after removing the shared component.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UserError


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


class TaskLogits(nn.Module):
    """The backbone's top followed by a task's frozen head: trunk features -> logits, as fine-tuning sees them."""

    def __init__(self, top: nn.Module, head: Tensor, scale: float, center: Tensor | None):
        super().__init__()
        self.top, self.scale, self.center = top, scale, center
        self.register_buffer("head", head)

    def forward(self, x: Tensor) -> Tensor:
        return head_logits(self.top(x), self.head, self.scale, self.center)


TEMPLATES: dict[str, tuple[str, ...]] = {
    # The authors' prompt sets, string for string and in their order (data, not code): src/datasets/templates.py of
    # VietHoang1512/CMM (cifar100_template, imagenet_template, office31_template, officehome_template,
    # imageclef_template, cars_template). Their ImageNet set is the CLIP paper's 80-prompt ensemble.
    "cifar100": (
        "a photo of a {}.", "a blurry photo of a {}.", "a black and white photo of a {}.",
        "a low contrast photo of a {}.", "a high contrast photo of a {}.", "a bad photo of a {}.",
        "a good photo of a {}.", "a photo of a small {}.", "a photo of a big {}.", "a photo of the {}.",
        "a blurry photo of the {}.", "a black and white photo of the {}.", "a low contrast photo of the {}.",
        "a high contrast photo of the {}.", "a bad photo of the {}.", "a good photo of the {}.",
        "a photo of the small {}.", "a photo of the big {}.",
    ),
    "imagenet": (
        "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.",
        "a photo of the hard to see {}.", "a low resolution photo of the {}.", "a rendering of a {}.",
        "graffiti of a {}.", "a bad photo of the {}.", "a cropped photo of the {}.", "a tattoo of a {}.",
        "the embroidered {}.", "a photo of a hard to see {}.", "a bright photo of a {}.",
        "a photo of a clean {}.", "a photo of a dirty {}.", "a dark photo of the {}.", "a drawing of a {}.",
        "a photo of my {}.", "the plastic {}.", "a photo of the cool {}.", "a close-up photo of a {}.",
        "a black and white photo of the {}.", "a painting of the {}.", "a painting of a {}.",
        "a pixelated photo of the {}.", "a sculpture of the {}.", "a bright photo of the {}.",
        "a cropped photo of a {}.", "a plastic {}.", "a photo of the dirty {}.",
        "a jpeg corrupted photo of a {}.", "a blurry photo of the {}.", "a photo of the {}.",
        "a good photo of the {}.", "a rendering of the {}.", "a {} in a video game.", "a photo of one {}.",
        "a doodle of a {}.", "a close-up photo of the {}.", "a photo of a {}.", "the origami {}.",
        "the {} in a video game.", "a sketch of a {}.", "a doodle of the {}.", "a origami {}.",
        "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.",
        "a photo of the clean {}.", "a photo of a large {}.", "a rendition of a {}.", "a photo of a nice {}.",
        "a photo of a weird {}.", "a blurry photo of a {}.", "a cartoon {}.", "art of a {}.",
        "a sketch of the {}.", "a embroidered {}.", "a pixelated photo of a {}.", "itap of the {}.",
        "a jpeg corrupted photo of the {}.", "a good photo of a {}.", "a plushie {}.",
        "a photo of the nice {}.", "a photo of the small {}.", "a photo of the weird {}.", "the cartoon {}.",
        "art of the {}.", "a drawing of the {}.", "a photo of the large {}.",
        "a black and white photo of a {}.", "the plushie {}.", "a dark photo of a {}.", "itap of a {}.",
        "graffiti of the {}.", "a toy {}.", "itap of my {}.", "a photo of a cool {}.",
        "a photo of a small {}.", "a tattoo of the {}.",
    ),
    "office-31": (
        "a photo of a {} in an office environment.", "an image of a {} on a desk.",
        "a snapshot of a {} used in an office setting.",
        "a realistic photo of a {} typically found in a workplace.",
        "a detailed shot of a {} in a professional office.", "a clear picture of a {} in an office space.",
    ),
    "office-home": (
        "a photo of a {} in an office setting.", "an image of a {} at a workspace.",
        "a picture of a {} in a modern office environment.",
        "a realistic photo of a {} from the Office-Home dataset.",
        "a depiction of a {} in a business context.",
    ),
    "imageclef": (
        "a photo of a {}.", "an image of a {}.", "a snapshot of a {}.", "a clear picture of a {}.",
        "an example of a {} in a natural setting.",
    ),
    "cars": (
        "a photo of a {}.", "a photo of the {}.", "a photo of my {}.", "i love my {}!",
        "a photo of my dirty {}.", "a photo of my clean {}.", "a photo of my new {}.",
        "a photo of my old {}.",
    ),
    "default": ("a photo of a {}.",),
}  # fmt: skip
"""Prompt templates per data set family; ``{}`` is replaced by the class name."""

TEMPLATE_OF_STREAM = {
    "cifar100": "cifar100", "imagenet-r": "imagenet", "imagenet-r-domains": "imagenet", "domainnet": "imagenet",
    "cub200": "imagenet", "cars": "cars", "office-31": "office-31", "office-home": "office-home",
    "imageclef": "imageclef",
}  # fmt: skip
"""Which prompt set each CLIP stream uses, as the authors' ``dataset_to_template`` maps their data sets (CUB-200 and
DomainNet take the ImageNet set there too)."""


def templates_for(stream: str) -> tuple[str, ...]:
    """The prompt templates of a stream (TEMPLATE_OF_STREAM); one plain prompt for streams outside the benchmarks."""
    return TEMPLATES[TEMPLATE_OF_STREAM.get(stream, "default")]


@torch.no_grad()
def zero_shot_text_head(model, tokenizer, class_names: Sequence[str], templates: Sequence[str]) -> Tensor:
    """[len(class_names), D]: per class, the mean over templates of the normalised text embeddings, re-normalised.

    Row i belongs to ``class_names[i]``. `model` is an open_clip CLIP (its ``encode_text``), `tokenizer` the
    matching open_clip tokenizer. Runs on the model's device; the head is returned in float32.
    """
    if not class_names or not templates:
        raise UserError("zero_shot_text_head needs at least one class name and one template")
    bad = [t for t in templates if "{}" not in t]
    if bad:
        raise UserError(f"every template needs a '{{}}' for the class name; these have none: {bad}")
    device = next(model.parameters()).device
    rows = []
    for name in class_names:
        tokens = tokenizer([t.format(name) for t in templates]).to(device)
        prompts = F.normalize(model.encode_text(tokens).float(), dim=-1)  # [n_templates, D]
        rows.append(F.normalize(prompts.mean(0), dim=-1))
    return torch.stack(rows)
