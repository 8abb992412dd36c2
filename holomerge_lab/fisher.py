"""The diagonal Fisher information, three ways, from per-example gradients.

    F = E_x E_{y ~ q(y|x)} [ (∂ log p(y|x; θ) / ∂θ)² ]

- true:      q = the model's own predictive distribution, summed exactly over classes: Σ_c p_c (∂ log p_c)²
- sampled:   one y drawn from p per example (the Monte-Carlo estimate most code calls "the Fisher")
- empirical: y = the data's label (not a Fisher at all when the model is wrong; often confused with it)

Adam's v is none of these: it is an EMA of the squared *mini-batch mean* gradient (see finetune.second_moment),
so it scales with batch size and the learning-rate schedule. Notebook 03 puts them side by side.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jacrev, vmap

from .errors import check_choice

KINDS = ("true", "sampled", "empirical")


def diagonal_fisher(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor | None = None,
    kind: str = "true",
    *,
    chunk_size: int = 64,
    seed: int = 0,
) -> dict[str, Tensor]:
    """Mean over examples of squared per-example gradients of log p, for `model`'s trainable parameters.

    `model(inputs)` must return logits. See `functional_diagonal_fisher` for the computation.
    """
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    return functional_diagonal_fisher(
        lambda p, x: functional_call(model, p, (x,)),
        params,
        inputs,
        labels,
        kind,
        chunk_size=chunk_size,
        seed=seed,
    )


def functional_diagonal_fisher(
    logits: Callable[[dict[str, Tensor], Tensor], Tensor],
    params: Mapping[str, Tensor],
    inputs: Tensor,
    labels: Tensor | None = None,
    kind: str = "true",
    *,
    chunk_size: int = 64,
    seed: int = 0,
) -> dict[str, Tensor]:
    """The diagonal Fisher of `logits(params, x)` (a batch of logits) with respect to `params`.

    The functional form lets the pipeline take the Fisher of a fine-tuned parameter dict through the backbone's top
    and a frozen head without building a module for it. Per-example gradients come from `torch.func.vmap`, in
    chunks so that memory stays at chunk_size × (classes for "true") × parameters.
    """
    check_choice("Fisher kind", kind, KINDS)
    if kind == "empirical" and labels is None:
        raise ValueError("the empirical Fisher needs the data's labels: pass labels=")
    params = {n: p.detach() for n, p in params.items()}

    def log_probs(p: dict[str, Tensor], x: Tensor) -> Tensor:
        return torch.log_softmax(logits(p, x.unsqueeze(0)).squeeze(0), dim=-1)

    def true_fisher(p: dict[str, Tensor], x: Tensor) -> dict[str, Tensor]:
        probs = log_probs(p, x).exp().detach()
        jac = jacrev(log_probs)(p, x)  # name -> [classes, *shape]
        return {n: torch.einsum("c,c...->...", probs, j.square()) for n, j in jac.items()}

    def label_fisher(p: dict[str, Tensor], x: Tensor, y: Tensor) -> dict[str, Tensor]:
        g = grad(lambda q: log_probs(q, x)[y])(p)
        return {n: v.square() for n, v in g.items()}

    generator = torch.Generator().manual_seed(seed)
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    for start in range(0, len(inputs), chunk_size):
        x = inputs[start : start + chunk_size]
        if kind == "true":
            parts = vmap(true_fisher, in_dims=(None, 0))(params, x)
        else:
            if kind == "sampled":
                with torch.no_grad():
                    probs = torch.softmax(logits(params, x), dim=-1)
                y = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            else:
                y = labels[start : start + chunk_size]
            parts = vmap(label_fisher, in_dims=(None, 0, 0))(params, x, y)
        for n, v in parts.items():
            total[n] += v.sum(0)
    return {n: v / len(inputs) for n, v in total.items()}
