"""BackPACK (backpack-for-pytorch) on the toolkit's embedded top: the two extensions it lacks and a plain copy.

BackPACK's `DiagGGNExact` backpropagates the GGN's symmetric factor module by module, so every module between a
parameter and the loss needs a known derivative. The embedded top uses two BackPACK lacks: ReLU6, the cosine
prototype head (scale · normalize(z − center) @ headᵀ). Both are written here, and `plain_top` rebuilds the
EfficientNet-Lite0 top from the modules BackPACK knows (nn.Conv2d, ZeroPad2d, BatchNorm2d) and a spatial mean,
sharing the top's parameters, so that its logits equal the toolkit model's exactly (tests/test_fisher_peers.py
checks it). For a softmax cross-entropy the GGN diagonal is the true Fisher diagonal, and `SumGradSquared` of the
summed loss is N × the empirical Fisher.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from backpack import backpack, extend
from backpack.core.derivatives.basederivatives import BaseDerivatives
from backpack.core.derivatives.elementwise import ElementwiseDerivatives
from backpack.extensions import DiagGGNExact, SumGradSquared
from backpack.extensions.secondorder.diag_ggn.diag_ggn_base import DiagGGNBaseModule
from backpack.utils.subsampling import subsample
from torch import Tensor, nn

from holomerge_lab.models.heads import head_logits


class CosineHead(nn.Module):
    """The toolkit's frozen prototype head as a module: scale · normalize(z − center) @ headᵀ."""

    def __init__(self, head: Tensor, scale: float, center: Tensor | None):
        super().__init__()
        self.register_buffer("head", head)
        self.scale, self.center = scale, center

    def forward(self, z: Tensor) -> Tensor:
        return head_logits(z, self.head, self.scale, self.center)


class SpatialMean(nn.Module):
    """The top's pooling, h.mean over height and width (BackPACK's AdaptiveAvgPool2d runs in float32 only)."""

    def forward(self, h: Tensor) -> Tensor:
        return h.mean(dim=(-2, -1))


class SpatialMeanDerivatives(BaseDerivatives):
    """Jᵀm: each channel's m spread evenly over its H·W positions."""

    def hessian_is_zero(self, module: nn.Module) -> bool:
        return True

    def _jac_t_mat_prod(self, module, g_inp, g_out, mat: Tensor, subsampling=None) -> Tensor:
        height, width = module.input0.shape[-2:]
        return (mat / (height * width))[..., None, None].expand(*mat.shape, height, width)


class ReLU6Derivatives(ElementwiseDerivatives):
    """ReLU6'(x) = 1 on (0, 6), else 0."""

    def hessian_is_zero(self, module: nn.Module) -> bool:
        return True

    def df(self, module, g_inp, g_out, subsampling=None) -> Tensor:
        x = subsample(module.input0, subsampling=subsampling)
        return ((x > 0) & (x < 6)).to(x.dtype)


class CosineHeadDerivatives(BaseDerivatives):
    """Jᵀ of z ↦ s · û @ headᵀ with û = u/‖u‖, u = z − center: Jᵀm = (s/‖u‖)(I − ûûᵀ) headᵀ m, per example."""

    def hessian_is_zero(self, module: nn.Module) -> bool:
        return False

    def _jac_t_mat_prod(self, module, g_inp, g_out, mat: Tensor, subsampling=None) -> Tensor:
        z = subsample(module.input0, subsampling=subsampling)
        u = z if module.center is None else z - module.center.to(z)
        norm = u.norm(dim=-1, keepdim=True)
        clamped = norm.clamp_min(1e-12)  # F.normalize's floor: below it the map is u / 1e-12, no projection
        unit = u / clamped
        back = module.scale * mat @ module.head.to(z)  # [V, N, D]
        return (back - (back * unit).sum(-1, keepdim=True) * unit * (norm > 1e-12)) / clamped


class DiagGGNReLU6(DiagGGNBaseModule):
    def __init__(self):
        super().__init__(derivatives=ReLU6Derivatives())


class DiagGGNCosineHead(DiagGGNBaseModule):
    def __init__(self):
        super().__init__(derivatives=CosineHeadDerivatives())


class DiagGGNSpatialMean(DiagGGNBaseModule):
    def __init__(self):
        super().__init__(derivatives=SpatialMeanDerivatives())


def _conv(conv: nn.Conv2d) -> list[nn.Module]:
    """An EfficientNet `Conv2dStaticSamePadding` as BackPACK's modules: its padding, then a plain nn.Conv2d that
    holds the same weight."""
    plain = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, 0, conv.dilation, conv.groups,
        bias=conv.bias is not None,
    )  # fmt: skip
    plain.weight = conv.weight
    if conv.bias is not None:
        plain.bias = conv.bias
    pad = conv.static_padding
    return ([copy.deepcopy(pad)] if isinstance(pad, nn.ZeroPad2d) else []) + [plain]


def plain_top(top: nn.Module, head: Tensor, scale: float, center: Tensor | None) -> nn.Sequential:
    """The EfficientNet-Lite0 top (blocks without skip or squeeze-excitation, as block 15) and the cosine head, as a
    Sequential of modules BackPACK knows, sharing `top`'s convolution weights (the same Parameter objects) and holding
    copies of its BatchNorm layers (BackPACK's hooks stay off the toolkit's modules)."""
    top = _CopiedNorms(top)
    layers: list[nn.Module] = []
    for block in top._blocks.values():
        args = block._block_args
        skip = block.id_skip and args.stride in (1, [1]) and args.input_filters == args.output_filters
        if block.has_se or skip:
            raise ValueError("plain_top rebuilds blocks without a skip connection or squeeze-excitation only")
        if args.expand_ratio != 1:
            layers += [*_conv(block._expand_conv), block._bn0, nn.ReLU6()]
        layers += [
            *_conv(block._depthwise_conv),
            block._bn1,
            nn.ReLU6(),
            *_conv(block._project_conv),
            block._bn2,
        ]
    layers += [*_conv(top._conv_head), top._bn1, nn.ReLU6(), SpatialMean()]
    return nn.Sequential(*layers, CosineHead(head, scale, center)).eval()


class _CopiedNorms:
    """Attribute access to `top` and its blocks, with each BatchNorm layer deep-copied as a plain nn.BatchNorm2d
    (BackPACK finds a module's derivative by its exact class; the toolkit's TangentBatchNorm2d only changes how a
    forward-mode tangent is computed, not the function)."""

    def __init__(self, module: nn.Module):
        self.module = module

    def __getattr__(self, name: str):
        value = getattr(self.module, name)
        if isinstance(value, nn.BatchNorm2d):
            plain = copy.deepcopy(value)
            plain.__class__ = nn.BatchNorm2d
            return plain
        if isinstance(value, nn.ModuleDict):
            return {k: _CopiedNorms(v) for k, v in value.items()}
        return value


def diag_ggn_exact() -> DiagGGNExact:
    """BackPACK's exact GGN diagonal, extended to ReLU6 and the cosine head."""
    extension = DiagGGNExact()
    extension.set_module_extension(nn.ReLU6, DiagGGNReLU6())
    extension.set_module_extension(CosineHead, DiagGGNCosineHead())
    extension.set_module_extension(SpatialMean, DiagGGNSpatialMean())
    return extension


def backpack_fisher(
    plain: nn.Sequential, inputs: Tensor, labels: Tensor, kind: str, names: Mapping[int, str]
) -> dict[str, Tensor]:
    """BackPACK's true ("true": DiagGGNExact of the mean loss) or empirical ("empirical": SumGradSquared of the
    summed loss, over N) diagonal Fisher of `plain`'s trainable parameters, named by `names` (id -> name)."""
    model = extend(plain)
    loss = extend(nn.CrossEntropyLoss(reduction="mean" if kind == "true" else "sum"))
    true = kind == "true"
    extension, field = (
        (diag_ggn_exact(), "diag_ggn_exact") if true else (SumGradSquared(), "sum_grad_squared")
    )
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    with backpack(extension):
        torch.autograd.backward(loss(model(inputs), labels), inputs=list(params.values()))
    scale = 1.0 if true else 1.0 / len(inputs)
    out = {names[id(p)]: getattr(p, field) * scale for p in params.values()}
    for p in params.values():
        p.grad = None
        delattr(p, field)
    return out
