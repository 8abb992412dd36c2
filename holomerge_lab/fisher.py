"""The diagonal Fisher information, three ways, from per-example gradients.

    F = E_x E_{y ~ q(y|x)} [ (∂ log p(y|x; θ) / ∂θ)² ]

- true:      q = the model's own predictive distribution, summed exactly over classes: Σ_c p_c (∂ log p_c)²
- sampled:   one y drawn from p per example (the Monte-Carlo estimate most code calls "the Fisher")
- empirical: y = the data's label (not a Fisher at all when the model is wrong; often confused with it)

Adam's v is none of these: it is an EMA of the squared *mini-batch mean* gradient (see finetune.second_moment),
so it scales with batch size and the learning-rate schedule. Notebook 03 puts them side by side.

The exact true Fisher of a module takes a layer-wise route when it can (`layerwise_true_fisher`): one forward pass
per chunk, one backward per class, and each layer's per-example gradient built from what that layer saw (its input
a and the gradient δ at its output) instead of a Jacobian of every parameter per example.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jacrev, vjp, vmap
from torch.nn.modules.batchnorm import _BatchNorm

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

    `model(inputs)` must return logits, each example's from its own input alone. The true Fisher goes layer by
    layer (`layerwise_true_fisher`) where that is exact; otherwise, see `functional_diagonal_fisher`.
    """
    if kind == "true":
        fisher = layerwise_true_fisher(model, inputs, chunk_size=chunk_size)
        if fisher is not None:
            return fisher
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


def layerwise_true_fisher(
    model: nn.Module, inputs: Tensor, *, chunk_size: int = 64
) -> dict[str, Tensor] | None:
    """The exact true diagonal Fisher Σ_c p_c (∂ log p_c/∂θ)², averaged over examples, layer by layer.

    Each module that owns trainable parameters is seen once per forward pass: its input a and, for every class c,
    the gradient at its output of √p_c · log p_c (one backward per class, all sharing one forward pass). Its
    per-example gradient is then a function of (a, δ) alone:
    - linear and 1×1-convolution weights: g = Σ_s δ_s a_sᵀ over positions s, so Σ_{c,n} g² is
      Σ_{s,s'} (Σ_c δ_s ⊙ δ_s')ᵀ (a_s ⊙ a_s') — S(S+1)/2 matrix products, no per-example gradient in memory;
    - any other module (a depthwise convolution, a bias): the vjp of its own forward on each example, squared.
    Returns None (the caller falls back to per-example Jacobians) where that is not exact: a trainable module run
    more or less than once, an input that is not one tensor, or BatchNorm in training mode (batch-coupled).
    """
    owners = {}  # module -> (its name prefix, the local names of its trainable parameters)
    for prefix, module in model.named_modules():
        local = [n for n, p in module.named_parameters(recurse=False) if p.requires_grad]
        if local:
            owners[module] = (prefix, local)
    if not owners or any(isinstance(m, _BatchNorm) and m.training for m in model.modules()):
        return None
    total = {f"{prefix}.{n}".lstrip("."): None for prefix, local in owners.values() for n in local}
    for start in range(0, len(inputs), chunk_size):
        seen = _forward_and_deltas(model, owners, inputs[start : start + chunk_size])
        if seen is None:
            return None
        for module, (a, deltas) in seen.items():
            prefix, local = owners[module]
            for n, value in _module_fisher(module, local, a, deltas).items():
                key = f"{prefix}.{n}".lstrip(".")
                total[key] = value if total[key] is None else total[key] + value
    return {n: v / len(inputs) for n, v in total.items()}


def _forward_and_deltas(
    model: nn.Module, owners: dict, x: Tensor
) -> dict[nn.Module, tuple[Tensor, Tensor]] | None:
    """One forward pass recording each owner's input; then δ[c] = ∂(Σ_n √p_nc log p_nc)/∂output for every class c:
    module -> (input [N, ...], δ [C, N, ...])."""
    records: dict[nn.Module, list] = {m: [] for m in owners}

    def record(module, args, kwargs, output):
        if len(args) != 1 or kwargs or not isinstance(args[0], Tensor) or not isinstance(output, Tensor):
            records[module].append(None)
            return None
        records[module].append((args[0].detach().clone(), output))
        return output.clone()  # later in-place ops change the clone, never the tensor δ is taken at

    hooks = [m.register_forward_hook(record, with_kwargs=True) for m in owners]
    try:
        with torch.enable_grad():
            log_probs = torch.log_softmax(model(x), dim=-1)
    finally:
        for h in hooks:
            h.remove()
    if any(len(r) != 1 or r[0] is None for r in records.values()):
        return None
    modules = list(owners)
    outputs = [records[m][0][1] for m in modules]
    root = log_probs.detach().exp().sqrt()
    classes = log_probs.shape[1]
    per_class = []  # one backward per class through the shared graph (batched backward measured no faster)
    for c in range(classes):
        weights = torch.zeros_like(root)
        weights[:, c] = root[:, c]
        per_class.append(
            torch.autograd.grad(log_probs, outputs, weights, retain_graph=c < classes - 1, allow_unused=True)
        )
    seen = {}
    for i, m in enumerate(modules):
        grads = [g[i] if g[i] is not None else torch.zeros_like(outputs[i]) for g in per_class]
        seen[m] = (records[m][0][0], torch.stack(grads))
    return seen


def _positions(module: nn.Module, a: Tensor, deltas: Tensor) -> tuple[Tensor, Tensor] | None:
    """(a [N, S, in], δ [C, N, S, out]) where `module` is y_s = W a_s (+ b) at every position s, else None."""
    if isinstance(module, nn.Linear):
        return a.reshape(a.shape[0], -1, a.shape[-1]), deltas.reshape(*deltas.shape[:2], -1, deltas.shape[-1])
    one_by_one = isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1) and module.groups == 1
    if (
        one_by_one and tuple(module.stride) == (1, 1) and a.shape[-2:] == deltas.shape[-2:]
    ):  # same size: no padding
        return a.flatten(2).transpose(1, 2), deltas.flatten(3).transpose(2, 3)
    return None


def _module_fisher(module: nn.Module, local: list[str], a: Tensor, deltas: Tensor) -> dict[str, Tensor]:
    """Σ over classes and examples of each local parameter's squared per-example gradient (δ carries √p_c)."""
    classes = deltas.shape[0]
    flat = _positions(module, a, deltas)
    if flat is not None and set(local) <= {"weight", "bias"}:
        x, d = flat  # [N, S, in], [C, N, S, out]
        positions = x.shape[1]
        if positions * (positions + 1) // 2 <= classes * positions:  # cheaper than per-example gradients
            out = {}
            if "weight" in local:
                weight = 0
                for s in range(positions):
                    for t in range(s, positions):
                        pair = (d[:, :, s] * d[:, :, t]).sum(0).T @ (x[:, s] * x[:, t])
                        weight = weight + (pair if s == t else 2 * pair)
                out["weight"] = weight.reshape(module.weight.shape)
            if "bias" in local:
                out["bias"] = d.sum(2).square().sum((0, 1))
            return out
    params = {k: getattr(module, k).detach() for k in local}

    def one(x: Tensor, delta: Tensor) -> dict[str, Tensor]:
        _, pull = vjp(lambda q: functional_call(module, q, (x.unsqueeze(0),)), params)
        return pull(delta.unsqueeze(0))[0]

    grads = vmap(vmap(one), in_dims=(None, 0))(a, deltas)  # name -> [C, N, *shape]
    return {k: g.square().sum((0, 1)) for k, g in grads.items()}
