"""Stage 3: representation alignment after a merge.

Merging moves the features. A few parameters of the merged model (a bias on the output feature, or the final
projection) are trained on the current task's images, without labels, so that the merged model's features match
a teacher's: the previous merged model θ̄(t−1) (the authors' choice) or the current fine-tuned model θ(t).
Everything else stays frozen, and the carried F̄ is not updated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import UserError, check_choice
from .finetune import batches, check_finite

LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "mse": F.mse_loss,
    "l1": F.l1_loss,
    # 1 − cos: the part of the feature a cosine-prototype (or CLIP) head actually reads
    "cosine": lambda a, b: (1 - F.cosine_similarity(a, b, dim=-1)).mean(),
}


@torch.no_grad()
def feature_discrepancy(a: Tensor, b: Tensor, loss: str = "mse") -> float:
    """The alignment loss between two feature sets, as one number for a table or a notebook."""
    return float(LOSSES[loss](a, b))


_FIX = "lower the alignment learning rate (now {:g}) or set a gradient clip, all finite"


def align(
    forward: Callable[..., Tensor],
    params: Mapping[str, Tensor],
    teacher_features: Tensor | Callable[[Tensor], Tensor],
    inputs: Tensor,
    *,
    parameter: str,
    loss: str = "mse",
    steps: int = 50,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    weight_decay: float = 0.0,
    grad_clip: float | None = None,
    augment: Callable[[Tensor, Tensor, int], Tensor] | None = None,
) -> dict[str, Tensor]:
    """Return `params` with only `params[parameter]` trained to bring forward(params, x) to the teacher's features.

    `teacher_features`: the teacher's outputs on `inputs`, computed once by the caller (the teacher never changes
    during alignment), or a function giving them for a batch, which `augment` (each batch's training view, as in
    `fine_tune`) needs: the teacher must see the same view. AdamW with `weight_decay`; `grad_clip` bounds the
    gradient norm (the authors: 1.0, AdamW's default decay 0.01).
    """
    check_choice("alignment loss", loss, LOSSES)
    check_choice("alignment parameter", parameter, params)
    if augment is not None and not callable(teacher_features):
        raise UserError(
            "augmented alignment needs the teacher as a function of the batch, not fixed features"
        )
    trained = params[parameter].detach().clone().requires_grad_(True)
    optimizer = torch.optim.AdamW([trained], lr=lr, weight_decay=weight_decay)
    loss_fn = LOSSES[loss]
    for step, batch in enumerate(batches(len(inputs), batch_size, steps, seed)):
        x = inputs[batch] if augment is None else augment(inputs[batch], batch, step)
        with torch.no_grad():
            target = teacher_features(x) if callable(teacher_features) else teacher_features[batch]
        value = loss_fn(forward({**params, parameter: trained}, x), target)
        if not torch.isfinite(value):
            raise UserError(f"alignment diverged at step {step} (loss {value.item()}); {_FIX.format(lr)}")
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_([trained], grad_clip)
        optimizer.step()
    check_finite("alignment", {parameter: trained}, _FIX.format(lr))
    return {**params, parameter: trained.detach()}
