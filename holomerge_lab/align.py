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

from .errors import check_choice
from .finetune import batches

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


def align(
    forward: Callable[..., Tensor],
    params: Mapping[str, Tensor],
    teacher_features: Tensor,
    inputs: Tensor,
    *,
    parameter: str,
    loss: str = "mse",
    steps: int = 50,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
) -> dict[str, Tensor]:
    """Return `params` with only `params[parameter]` trained to bring forward(params, x) to the teacher's features.

    `teacher_features` are the teacher's outputs on `inputs`, computed once by the caller (the teacher never
    changes during alignment).
    """
    check_choice("alignment loss", loss, LOSSES)
    check_choice("alignment parameter", parameter, params)
    trained = params[parameter].detach().clone().requires_grad_(True)
    optimizer = torch.optim.AdamW([trained], lr=lr, weight_decay=0.0)
    loss_fn = LOSSES[loss]
    for batch in batches(len(inputs), batch_size, steps, seed):
        current = forward({**params, parameter: trained}, inputs[batch])
        value = loss_fn(current, teacher_features[batch])
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
    return {**params, parameter: trained.detach()}
