"""The diagonal Fisher op by op: the closed forms behind `fisher.diagonal_fisher` where it can prove them exact.

One forward pass records every use of every parameter (`checked_trace`); a parameter whose one use is the weight or
bias of a closed-form op has a per-example gradient that is a function of that op's input a and output gradient δ.
`op_fisher` then takes one backward per class (one in all for a sampled or empirical label) and turns each op's
(a, δ) into Σ g², instead of a Jacobian of every parameter per example. The operations it knows: linear layers,
convolutions, layer norms, `x @ P`, a parameter added to or expanded over every example (a bias, a positional
embedding, a class token), and self-attention, which it runs as the linear layers it is made of.

Kept apart from fisher.py, which holds the public API, the label sampling and the per-example route that every
parameter not proven here takes: this module is the recording machinery (a TorchFunctionMode) and the algebra of
each op, and imports nothing from fisher.py.
"""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.modules.batchnorm import _BatchNorm
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

# Per-example gradients of a weight are built at most this many numbers at a time (64 MiB in float32)
PER_EXAMPLE_NUMBERS = 1 << 24
# Writing and squaring one class of per-example weight gradients costs about as much as this many products of one
# pair of positions (see weight_squares)
PER_EXAMPLE_OVERHEAD = 20

# The operations with a closed-form per-example gradient, and their arguments in order (defaults as torch's)
_SIGNATURES: dict[Callable, tuple[str, tuple[str, ...], dict]] = {
    F.linear: ("linear", ("input", "weight", "bias"), {"bias": None}),
    torch.conv2d: (
        "conv2d",
        ("input", "weight", "bias", "stride", "padding", "dilation", "groups"),
        {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1},
    ),
    F.layer_norm: (
        "layer_norm",
        ("input", "normalized_shape", "weight", "bias", "eps"),
        {"weight": None, "bias": None, "eps": 1e-5},
    ),
}
_ADDS = {torch.add, Tensor.add, Tensor.__add__}
_MATMULS = {torch.matmul, Tensor.matmul, Tensor.__matmul__}
# Ops that give a tensor another shape in the same element order: their output of a parameter stands for it
_RESHAPES = {
    Tensor.view, Tensor.reshape, torch.reshape, Tensor.unsqueeze, torch.unsqueeze, Tensor.squeeze, torch.squeeze,
    Tensor.flatten, torch.flatten,
}  # fmt: skip
_ATTENTION = inspect.signature(F.multi_head_attention_forward)


def model_outputs(model: nn.Module, values: dict[str, Tensor], x: Tensor, *tangent: Tensor) -> Tensor:
    """`model(x)` with `values` in it; with a tangent model's outputs given, their values on the model's gradients
    (a tangent model's Jacobian is the model's at its linearization point)."""
    out = functional_call(model, values, (x,), tie_weights=False)
    return out + (tangent[0] - out).detach() if tangent else out


@dataclass
class _Op:
    kind: str  # "linear", "conv2d", "layer_norm", "matmul" or "broadcast"
    input: Tensor | None  # None: a parameter expanded over the examples, with no input
    version: int  # the input's version counter when recorded: an in-place change after would void it
    output: Tensor  # the tensor δ is taken at; the program goes on with a clone, so no in-place op reaches it
    roles: dict[str, str]  # parameter name -> "weight" or "bias"
    options: dict  # stride, padding, dilation, groups / normalized_shape, eps


@dataclass
class _Trace:
    logits: Tensor
    ops: list[_Op]
    uses: Counter  # parameter name -> number of operations that took it as an argument
    shapes: dict  # parameter name -> its shape (an op may have seen it reshaped)
    opaque: set = field(default_factory=set)  # parameters some use of which has no closed form

    def proven(self) -> dict[str, str]:
        """Parameter name -> the kind of its op, for each parameter whose only use is one closed-form op."""
        return {
            n: op.kind
            for op in self.ops
            if op.input is None or op.input._version == op.version
            for n in op.roles
            if self.uses[n] == 1 and n not in self.opaque
        }

    def signature(self, examples: int) -> list | None:
        """Each op's kind, roles and shapes without dim 0, or None where some dim 0 is not `examples` long."""
        rows = []
        for op in self.ops:
            if op.input is not None and op.input.shape[0] != examples or op.output.shape[0] != examples:
                return None
            rows.append(
                (op.kind, op.roles, None if op.input is None else op.input.shape[1:], op.output.shape[1:])
            )
        return [rows, sorted(self.uses.items()), sorted(self.opaque)]


class _Recorder(TorchFunctionMode):
    """Sees every torch call of a forward pass; records the ones that take a tracked parameter."""

    def __init__(self, names: dict[int, str]):
        super().__init__()
        self.names, self.ops, self.uses, self.opaque = names, [], Counter(), set()
        self.reshaped = []  # a parameter's reshaped views, kept alive so that their ids stay theirs

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        found = [self.names[id(t)] for t in tree_leaves((args, kwargs)) if id(t) in self.names]
        if func is F.multi_head_attention_forward and found and (attention := _self_attention(args, kwargs)):
            with self:  # its projections are recorded as the linear layers they are
                return attention()
        out = func(*args, **kwargs)
        if not found or not any(isinstance(t, Tensor) and t.is_floating_point() for t in tree_leaves(out)):
            return out  # a shape, a dtype, a comparison: nothing a gradient flows through
        if isinstance(out, Tensor) and id(out) in self.names:
            return out  # the parameter itself (`.to` its own dtype): not a use
        if (
            func in _RESHAPES
            and args
            and id(args[0]) in self.names
            and len(found) == 1
            and _same_elements(out, args[0])
        ):
            self.names[id(out)] = found[0]  # stands for the parameter: its uses are the parameter's
            self.reshaped.append(out)
            return out
        self.uses.update(found)
        op = _closed_form_op(func, args, kwargs, self.names, out)
        if op is None:
            self.opaque.update(found)
            return out
        if not out.requires_grad:  # nothing before it is tracked: make it a leaf that δ can be taken at
            out.requires_grad_()
        kind, a, roles, options = op
        self.ops.append(_Op(kind, a, -1 if a is None else a._version, out, roles, options))
        return out.clone()


def _same_elements(out, tensor: Tensor) -> bool:
    return isinstance(out, Tensor) and out.dtype == tensor.dtype and out.numel() == tensor.numel()


def _self_attention(args: tuple, kwargs: dict) -> Callable | None:
    """`F.multi_head_attention_forward(*args, **kwargs)` as the linear layers and scaled dot products it is made of,
    with the examples in dim 0, where it is plain batched self-attention (one packed input projection; no mask,
    dropout, extra keys or attention weights out); else None. Inside the fused call no op of it could be seen."""
    try:
        bound = _ATTENTION.bind(*args, **kwargs)
    except TypeError:
        return None
    bound.apply_defaults()
    a = bound.arguments
    plain = (
        isinstance(a["query"], Tensor) and a["query"].ndim == 3 and a["query"] is a["key"] is a["value"]
        and a["in_proj_weight"] is not None and not a["use_separate_proj_weight"]
        and a["bias_k"] is None and a["bias_v"] is None and not a["add_zero_attn"]
        and (a["dropout_p"] == 0 or not a["training"]) and not a["need_weights"] and not a["is_causal"]
        and a["key_padding_mask"] is None and a["attn_mask"] is None and a["static_k"] is None and a["static_v"] is None
    )  # fmt: skip
    if not plain:
        return None

    def attention() -> tuple[Tensor, None]:
        x = a["query"].transpose(0, 1)  # [length, N, width] -> [N, length, width]
        examples, length, width = x.shape
        heads = a["num_heads"]
        q, k, v = (
            t.reshape(examples, length, heads, width // heads).transpose(1, 2)
            for t in F.linear(x, a["in_proj_weight"], a["in_proj_bias"]).chunk(3, dim=-1)
        )
        mixed = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(examples, length, width)
        return F.linear(mixed, a["out_proj_weight"], a["out_proj_bias"]).transpose(0, 1), None

    return attention


def _closed_form_op(
    func, args, kwargs, names: dict[int, str], out
) -> tuple[str, Tensor | None, dict, dict] | None:
    """(kind, input, parameter name -> role, options) where `func` is a closed-form op whose only tracked
    arguments are its weight and bias, else None."""
    if not isinstance(out, Tensor):
        return None
    if func in _ADDS or func in _MATMULS or func is Tensor.expand:
        return _broadcast_or_matmul(func, args, kwargs, names, out)
    if func not in _SIGNATURES:
        return None
    kind, order, defaults = _SIGNATURES[func]
    if len(args) > len(order):
        return None
    bound = {**defaults, **dict(zip(order, args, strict=False)), **kwargs}
    if not isinstance(bound.get("input"), Tensor) or set(bound) != set(order):
        return None
    roles = {names[id(bound[r])]: r for r in ("weight", "bias") if id(bound[r]) in names}
    others = [v for k, v in bound.items() if k not in roles.values()]
    if any(id(t) in names for t in tree_leaves(others)):
        return None
    options = {k: v for k, v in bound.items() if k not in ("input", "weight", "bias")}
    if kind == "conv2d":
        if bound["input"].ndim != 4 or isinstance(options["padding"], str) and options["padding"] != "valid":
            return None  # unbatched input, or "same" padding (F.unfold needs it as numbers)
        options["padding"] = 0 if options["padding"] == "valid" else options["padding"]
        options["kernel_size"] = tuple(bound["weight"].shape[2:])
    if kind != "layer_norm":
        options["weight_shape"] = tuple(bound["weight"].shape)
    return kind, bound["input"], roles, options


def _broadcast_or_matmul(func, args, kwargs, names: dict[int, str], out: Tensor) -> tuple | None:
    """`x + P` or `P.expand(...)` where P broadcasts within each example (a "broadcast": its per-example gradient is
    δ summed over the positions P was repeated along), or `x @ P` with a matrix P (a "matmul": a linear layer with
    weight Pᵀ)."""
    tracked = [t for t in args if isinstance(t, Tensor) and id(t) in names]
    if kwargs or len(tracked) != 1:
        return None
    p = tracked[0]
    if func is Tensor.expand:
        x = None
        if args[0] is not p or any(isinstance(t, Tensor) for t in tree_leaves(args[1:])):
            return None
    else:
        if len(args) != 2 or not all(isinstance(t, Tensor) for t in args):
            return None
        x = args[1] if args[0] is p else args[0]
    if func in _MATMULS:
        if args[1] is not p or p.ndim != 2 or x.ndim < 2:
            return None
        return "matmul", x, {names[id(p)]: "weight"}, {"weight_shape": (p.shape[1], p.shape[0])}
    padded = (1,) * (out.ndim - p.ndim) + tuple(p.shape)
    if p.ndim > out.ndim or padded[0] != 1 or x is not None and x.shape != out.shape:
        return None  # P would vary along the examples, or widen x
    return "broadcast", x, {names[id(p)]: "bias"}, {"shape": padded[1:]}


def _trace(
    model: nn.Module,
    values: dict[str, Tensor],
    params: dict[str, Tensor],
    x: Tensor,
    head: Callable | None = None,
    *tangent: Tensor,
) -> _Trace:
    """One forward pass of `model` (then `head`) with `values` in it, recording every use of a tensor of `params`;
    a tangent model's outputs, where given, are the values the head sees (`model_outputs`)."""
    recorder = _Recorder({id(p): n for n, p in params.items()})
    with torch.enable_grad(), recorder:
        logits = model_outputs(model, values, x, *tangent)
        logits = logits if head is None else head(logits)
    return _Trace(
        logits, recorder.ops, recorder.uses, {n: p.shape for n, p in params.items()}, recorder.opaque
    )


def checked_trace(
    model: nn.Module,
    values: dict[str, Tensor],
    params: dict[str, Tensor],
    x: Tensor,
    head: Callable | None,
    one: list | None,
    *tangent: Tensor,
) -> tuple[_Trace | None, list | None]:
    """The trace of a forward pass on x, and `one`, the signature of a pass on one example (made if None); the trace
    is None where op by op cannot hold for any parameter: BatchNorm in training mode (batch statistics couple the
    examples), or ops whose dim 0 does not follow the number of examples as the one-example pass shows."""
    if any(isinstance(m, _BatchNorm) and m.training for m in model.modules()):
        return None, one
    trace = _trace(model, values, params, x, head, *tangent)
    if one is None:
        one = _trace(model, values, params, x[:1], head, *(t[:1] for t in tangent)).signature(1)
    return (trace if trace.signature(len(x)) == one else None), one


def op_fisher(trace: _Trace, y: Tensor | None) -> dict[str, Tensor]:
    """Σ over the chunk's examples of the squared per-example gradient of each proven parameter.

    One backward per class c of √p_c · log p_c (or one of log p_y), all sharing the recorded forward pass, gives
    δ [K, N, ...] at each op's output; each op then turns (a, δ) into Σ_{k,n} g_kn²."""
    proven = trace.proven()
    ops = [op for op in trace.ops if any(n in proven for n in op.roles)]
    if not ops:
        return {}
    log_probs = torch.log_softmax(trace.logits, dim=-1)
    if y is None:
        root = log_probs.detach().exp().sqrt()
        eye = torch.eye(root.shape[1], dtype=root.dtype, device=root.device)
        weights = [root * eye[c] for c in range(root.shape[1])]
    else:
        weights = [F.one_hot(y, log_probs.shape[1]).to(log_probs)]
    outputs = [op.output for op in ops]
    per_class = [
        torch.autograd.grad(log_probs, outputs, w, retain_graph=k < len(weights) - 1, allow_unused=True)
        for k, w in enumerate(weights)
    ]  # one backward per class through the shared graph (a batched backward measured no faster)
    out = {}
    for i, op in enumerate(ops):
        deltas = torch.stack([g[i] if g[i] is not None else torch.zeros_like(outputs[i]) for g in per_class])
        for role, value in _squared_gradients(op, deltas.detach()).items():
            name = next(n for n, r in op.roles.items() if r == role)
            if name in proven:
                out[name] = value.reshape(trace.shapes[name])
    return out


def _squared_gradients(op: _Op, deltas: Tensor) -> dict[str, Tensor]:
    """Role -> Σ_{k,n} (per-example gradient)² of the op's weight / bias, from its input and δ [K, N, *out]."""
    roles = set(op.roles.values())
    classes, examples = deltas.shape[:2]
    if op.kind == "broadcast":
        return {"bias": deltas.sum_to_size(classes, examples, *op.options["shape"]).square().sum((0, 1))}
    a = op.input.detach()
    if op.kind == "layer_norm":
        dims = len(op.options["normalized_shape"])
        normal = F.layer_norm(a, op.options["normalized_shape"], None, None, op.options["eps"])
        size = normal.shape[a.ndim - dims :]
        d = deltas.reshape(classes, examples, -1, size.numel())
        out = {}
        if "weight" in roles:
            g = (d * normal.reshape(1, examples, -1, size.numel())).sum(2)
            out["weight"] = g.square().sum((0, 1)).reshape(size)
        if "bias" in roles:
            out["bias"] = d.sum(2).square().sum((0, 1)).reshape(size)
        return out
    if op.kind in ("linear", "matmul"):
        x = a.reshape(examples, 1, -1, a.shape[-1])  # [N, G=1, S, in]
        d = deltas.reshape(classes, examples, 1, -1, deltas.shape[-1])  # [K, N, G=1, S, out]
    else:  # conv2d: a linear map of each unfolded patch, per group of channels
        o, groups = op.options, op.options["groups"]
        if o["kernel_size"] == (1, 1) and o["stride"] in (1, (1, 1)) and o["padding"] in (0, (0, 0)):
            patches = a.flatten(2)  # [N, in, S]: a 1×1 convolution's patches are its input
        else:
            patches = F.unfold(a, o["kernel_size"], o["dilation"], o["padding"], o["stride"])
        x = patches.reshape(examples, groups, -1, patches.shape[-1]).transpose(2, 3)  # [N, G, S, in/G·kh·kw]
        d = deltas.reshape(classes, examples, groups, deltas.shape[2] // groups, -1).transpose(3, 4)
    out = {}
    if "weight" in roles:
        weight = weight_squares(d, x).reshape(op.options["weight_shape"])
        out["weight"] = weight.T if op.kind == "matmul" else weight
    if "bias" in roles:
        out["bias"] = d.sum(3).square().sum((0, 1)).reshape(-1)
    return out


def weight_squares(d: Tensor, x: Tensor) -> Tensor:
    """Σ_{k,n} (Σ_s δ_kns a_nsᵀ)² per group, d [K, N, G, S, out], x [N, G, S, in] -> [G, out, in], by the cheaper of:

    - pairs of positions: Σ_{s≤t} (2 −[s=t]) (Σ_k δ_s ⊙ δ_t)ᵀ (a_s ⊙ a_t) — S(S+1)/2 products [out, N]·[N, in];
    - per-example gradients: K·N products [out, S]·[S, in], then written out and squared (memory-bound): measured
      to cost about K·(S + PER_EXAMPLE_OVERHEAD) pair products (benchmarks/RESULTS.md, "Fisher routes").
    """
    classes, examples, groups, positions, _ = d.shape
    if positions * (positions + 1) // 2 <= classes * (positions + PER_EXAMPLE_OVERHEAD):
        total = 0
        for s in range(positions):
            for t in range(s, positions):
                left = (d[:, :, :, s] * d[:, :, :, t]).sum(0).permute(1, 2, 0)  # [G, out, N]
                pair = left @ (x[:, :, s] * x[:, :, t]).transpose(0, 1)  # [G, out, in]
                total = total + (pair if s == t else 2 * pair)
        return total.clamp_min(0)  # a sum of squares: the cross terms' rounding can leave a zero slightly below it
    per_example = classes * groups * d.shape[-1] * x.shape[-1]
    step = max(1, PER_EXAMPLE_NUMBERS // per_example)
    total = 0
    for n in range(0, examples, step):
        left = d[:, n : n + step].permute(1, 2, 0, 4, 3)  # [n, G, K, out, S]
        g = left @ x[n : n + step].unsqueeze(2)  # [n, G, K, out, in]
        total = total + g.square().sum((0, 2))
    return total
