"""The diagonal Fisher information, three ways, from per-example gradients.

    F = E_x E_{y ~ q(y|x)} [ (∂ log p(y|x; θ) / ∂θ)² ]

- true:      q = the model's own predictive distribution, summed exactly over classes: Σ_c p_c (∂ log p_c)²
- sampled:   one y drawn from p per example (the Monte-Carlo estimate most code calls "the Fisher")
- empirical: y = the data's label (not a Fisher at all when the model is wrong; often confused with it)

Adam's v is none of these: it is an EMA of the squared *mini-batch mean* gradient (see finetune.second_moment),
so it scales with batch size and the learning-rate schedule. Notebook 03 puts them side by side.

`diagonal_fisher` of a module goes op by op where it can prove that exact: one forward pass per chunk, one backward
per class (one in all for a sampled or empirical label), and each parameter's per-example gradient built from the
input a and the output gradient δ of the one operation that uses it, instead of a Jacobian of every parameter per
example (the recording and the closed forms are in fisher_ops.py). Every parameter it cannot prove that for takes the
per-example route (`functional_diagonal_fisher`). This module holds the public API, the label sampling and that
per-example route.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn
from torch.func import grad, jacrev, vmap

from ..errors import UserError, check_choice
from .fisher_ops import checked_trace, model_outputs, op_fisher

KINDS = ("true", "sampled", "empirical")


def diagonal_fisher(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor | None = None,
    kind: str = "true",
    *,
    params: Mapping[str, Tensor] | None = None,
    constants: Mapping[str, Tensor] | None = None,
    head: Callable[[Tensor], Tensor] | None = None,
    chunk_size: int = 64,
    seed: int = 0,
    tangent_outputs: Callable[[Tensor], Tensor] | None = None,
) -> dict[str, Tensor]:
    """Mean over examples of squared per-example gradients of log p, for `params` of `model`.

    The logits are `head(model(inputs))` (`model(inputs)` without a head), each example's from its own input
    alone. `params` (default: the model's trainable parameters) and `constants` (other parameters or buffers) are
    values put into the model as `torch.func.functional_call` does; the Fisher is taken with respect to `params`.
    Parameters used once by an operation with a closed form go op by op (`exact_routes`); the rest through
    per-example Jacobians (as `functional_diagonal_fisher`, same sampled labels).

    The Fisher of a tangent model linearized at `params`: pass its outputs (before `head`) of a chunk of inputs as
    `tangent_outputs`. Its Jacobian is the model's at `params` (the linearization point), so the same passes serve,
    with the outputs' values, and so the head's Jacobian and p, taken from it.
    """
    _check_arguments(kind, inputs, labels, chunk_size)
    params, values = _values(model, params, constants)

    def logits(p: dict[str, Tensor], x: Tensor, *tangent: Tensor) -> Tensor:
        out = model_outputs(model, _everywhere(model, {**values, **p}), x, *tangent)
        return out if head is None else head(out)

    generator = torch.Generator().manual_seed(seed)
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    one = None  # what each recorded op saw on one example
    for start in range(0, len(inputs), chunk_size):
        x = inputs[start : start + chunk_size]
        with torch.no_grad():
            tangent = () if tangent_outputs is None else (tangent_outputs(x),)
        trace, one = checked_trace(model, values, params, x, head, one, *tangent)
        if trace is None:
            with torch.no_grad():
                y = _labels(kind, logits(params, x, *tangent), labels, start, generator)
            parts = {}
        else:
            y = _labels(kind, trace.logits.detach(), labels, start, generator)
            parts = op_fisher(trace, y)
        rest = {n: p for n, p in params.items() if n not in parts}
        if rest:
            parts.update(_per_example_fisher(logits, rest, x, y, *tangent))
        for n, v in parts.items():
            total[n] += v
    return {n: v / len(inputs) for n, v in total.items()}


def exact_routes(
    model: nn.Module,
    inputs: Tensor,
    *,
    params: Mapping[str, Tensor] | None = None,
    constants: Mapping[str, Tensor] | None = None,
    head: Callable[[Tensor], Tensor] | None = None,
) -> dict[str, str]:
    """Which route `diagonal_fisher` (same arguments) takes for each parameter on `inputs`: the operation whose
    closed form it uses ("linear", "conv2d", "layer_norm", "matmul", "broadcast"; attention's projections are
    "linear"), or "per-example" where it cannot prove that one operation is all."""
    params, values = _values(model, params, constants)
    trace, _ = checked_trace(model, values, params, inputs, head, None)
    proven = {} if trace is None else trace.proven()
    return {n: proven.get(n, "per-example") for n in params}


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

    The reference route: per-example gradients from `torch.func.vmap`, in chunks so that memory stays at
    chunk_size × (classes for "true") × parameters. It needs no module, so it also takes the Fisher of a tangent
    (linearized) model.
    """
    _check_arguments(kind, inputs, labels, chunk_size)
    params = {n: p.detach() for n, p in params.items()}
    generator = torch.Generator().manual_seed(seed)
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    for start in range(0, len(inputs), chunk_size):
        x = inputs[start : start + chunk_size]
        with torch.no_grad():
            y = _labels(kind, logits(params, x), labels, start, generator)
        for n, v in _per_example_fisher(logits, params, x, y).items():
            total[n] += v
    return {n: v / len(inputs) for n, v in total.items()}


def _check_arguments(kind: str, inputs: Tensor, labels: Tensor | None, chunk_size: int) -> None:
    """A Fisher is a mean over examples: none would give 0/0 = NaN everywhere, as would a chunk of 0."""
    check_choice("Fisher kind", kind, KINDS)
    if kind == "empirical" and labels is None:
        raise UserError("the empirical Fisher needs the data's labels: pass labels=")
    if len(inputs) == 0:
        raise UserError("the Fisher is a mean over examples: pass at least one input")
    if labels is not None and len(labels) != len(inputs):
        raise UserError(f"{len(labels)} labels for {len(inputs)} inputs: pass one label per input")
    if chunk_size < 1:
        raise UserError(f"chunk_size must be at least 1, got {chunk_size}")


def _values(
    model: nn.Module, params: Mapping[str, Tensor] | None, constants: Mapping[str, Tensor] | None
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """(the parameters the Fisher is of, everything put into the model), detached; by default the model's
    trainable parameters."""
    if params is None:
        params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    params = {n: p.detach() for n, p in params.items()}
    return params, _everywhere(model, {**{n: v.detach() for n, v in (constants or {}).items()}, **params})


def _everywhere(model: nn.Module, values: dict[str, Tensor]) -> dict[str, Tensor]:
    """`values`, each also under the other names its parameter has in `model` (a weight tied between two modules),
    once per module attribute: for functional_call(tie_weights=False), which, unlike its tying, restores a module
    that appears twice (Sequential(layer, act, layer)) to its own parameters afterwards."""
    slots: dict[int, list[str]] = {}
    seen = set()
    for name, p in model.named_parameters(remove_duplicate=False):
        prefix, _, attr = name.rpartition(".")
        slot = (id(model.get_submodule(prefix)), attr)
        if slot not in seen:
            seen.add(slot)
            slots.setdefault(id(p), []).append(name)
    own = dict(model.named_parameters())
    out = dict(values)
    for name, v in values.items():
        if name in own:
            out.update(dict.fromkeys(slots[id(own[name])], v))
    return out


def _labels(
    kind: str, logits: Tensor, labels: Tensor | None, start: int, generator: torch.Generator
) -> Tensor | None:
    """The chunk's labels: None for the true Fisher (all classes), a draw from p for sampled, the data's else."""
    if kind == "true":
        return None
    if kind == "sampled":
        probs = torch.softmax(logits, dim=-1).cpu()  # drawn on the CPU: the same labels on every device
        return torch.multinomial(probs, 1, generator=generator).squeeze(1).to(logits.device)
    return labels[start : start + len(logits)].to(logits.device)


def _per_example_fisher(
    logits: Callable[..., Tensor],
    params: dict[str, Tensor],
    x: Tensor,
    y: Tensor | None,
    *extra: Tensor,
) -> dict[str, Tensor]:
    """Σ over the examples of x of each parameter's squared gradient of log p (Σ_c p_c (·)² where y is None), from
    `logits(params, x, *extra)`; `extra` are per-example tensors too (a tangent model's outputs)."""

    def log_probs(p: dict[str, Tensor], *v: Tensor) -> Tensor:
        return torch.log_softmax(logits(p, *(t.unsqueeze(0) for t in v)).squeeze(0), dim=-1)

    def true_fisher(p: dict[str, Tensor], *v: Tensor) -> dict[str, Tensor]:
        probs = log_probs(p, *v).exp().detach()
        jac = jacrev(log_probs)(p, *v)  # name -> [classes, *shape]
        return {n: torch.einsum("c,c...->...", probs, j.square()) for n, j in jac.items()}

    def label_fisher(p: dict[str, Tensor], label: Tensor, *v: Tensor) -> dict[str, Tensor]:
        g = grad(lambda q: log_probs(q, *v)[label])(p)
        return {n: g_n.square() for n, g_n in g.items()}

    batched = (0,) * (1 + len(extra))
    if y is None:
        parts = vmap(true_fisher, in_dims=(None, *batched))(params, x, *extra)
    else:
        parts = vmap(label_fisher, in_dims=(None, 0, *batched))(params, y, x, *extra)
    return {n: v.sum(0) for n, v in parts.items()}
