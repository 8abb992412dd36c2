"""TangentBatchNorm2d against torch's own forward-mode rule for BatchNorm, bit for bit, in EfficientNet-Lite0's real
top (f_lin and the gradients that train θ), and against the affine map written out; every case it does not handle
goes to torch's path."""

import copy

import pytest
import torch
import torch.autograd.forward_ad as fwAD
from torch import nn
from torch.func import jvp

from holomerge_lab.method.linearize import linearized_forward
from holomerge_lab.models.effnet import build_effnet_lite0
from holomerge_lab.models.frozen_batchnorm import TangentBatchNorm2d, with_tangent_batchnorm


def with_torch_batchnorm(module: nn.Module) -> nn.Module:
    """A copy whose BatchNorms are torch's own again (the reference: batch_norm_jvp)."""
    module = copy.deepcopy(module)
    for layer in module.modules():
        if type(layer) is TangentBatchNorm2d:
            layer.__class__ = nn.BatchNorm2d
    return module


def f_lin_and_gradients(top: nn.Module, names: list[str], h: torch.Tensor) -> tuple[torch.Tensor, dict]:
    named = dict(top.named_parameters())
    theta0 = {n: named[n].detach().clone() for n in names}
    g = torch.Generator().manual_seed(1)
    theta = {
        n: (p + 1e-2 * torch.randn(p.shape, generator=g)).requires_grad_(True) for n, p in theta0.items()
    }
    out = linearized_forward(top, theta0, theta, h)
    (out.square().sum() + out.sin().sum()).backward()
    return out.detach(), {n: t.grad for n, t in theta.items()}


@pytest.mark.parametrize("trainable_from", [15, 13])
def test_the_real_top_gives_torchs_numbers_bit_for_bit(trainable_from):
    backbone = build_effnet_lite0(trainable_from=trainable_from)
    assert sum(type(m) is TangentBatchNorm2d for m in backbone.top.modules()) > 0
    channels = backbone.top._blocks[str(trainable_from)]._expand_conv.in_channels
    h = torch.randn(32, channels, 4, 4)
    ours = f_lin_and_gradients(backbone.top, list(backbone.trainable), h)
    torchs = f_lin_and_gradients(with_torch_batchnorm(backbone.top), list(backbone.trainable), h)
    assert torch.equal(ours[0], torchs[0])
    for name in backbone.trainable:
        assert torch.equal(ours[1][name], torchs[1][name]), name


def frozen_layer() -> TangentBatchNorm2d:
    layer = with_tangent_batchnorm(nn.Sequential(nn.BatchNorm2d(6))).eval().requires_grad_(False)[0]
    g = torch.Generator().manual_seed(3)
    for buffer in (layer.running_mean, layer.weight, layer.bias):
        buffer.copy_(torch.randn(6, generator=g))
    layer.running_var.copy_(torch.rand(6, generator=g) + 0.1)
    return layer


def test_the_tangent_is_the_affine_map_written_out():
    layer, x, dx = frozen_layer(), torch.randn(4, 6, 3, 3), torch.randn(4, 6, 3, 3)
    out, tangent = jvp(layer, (x,), (dx,))
    shape = (1, 6, 1, 1)
    sigma = (layer.running_var + layer.eps).sqrt().view(shape)
    torch.testing.assert_close(out, (x - layer.running_mean.view(shape)) / sigma * layer.weight.view(shape)
                               + layer.bias.view(shape))  # fmt: skip
    torch.testing.assert_close(tangent, dx / sigma * layer.weight.view(shape))
    assert torch.equal(out, nn.BatchNorm2d.forward(layer, x))  # torch's own kernel for the output


def test_what_it_does_not_handle_goes_to_torchs_rule():
    layer, x, dx = frozen_layer(), torch.randn(4, 6, 3, 3), torch.randn(4, 6, 3, 3)
    reference = with_torch_batchnorm(nn.Sequential(layer))[0]
    dw = torch.randn(6)

    def on_weight(module):  # a tangent on γ as well as on the input
        return lambda w, v: torch.func.functional_call(module, {"weight": w}, (v,))

    for a, b in zip(jvp(on_weight(layer), (layer.weight, x), (dw, dx)),
                    jvp(on_weight(reference), (reference.weight, x), (dw, dx)), strict=True):  # fmt: skip
        assert torch.equal(a, b)
    assert torch.equal(layer(x), reference(x))  # no tangent at all
    layer.train(), reference.train()
    with fwAD.dual_level():  # batch statistics (torch.func refuses the running statistics' update)
        ours, torchs = (fwAD.unpack_dual(m(fwAD.make_dual(x, dx))) for m in (layer, reference))
        assert torch.equal(ours.primal, torchs.primal) and torch.equal(ours.tangent, torchs.tangent)
    assert torch.equal(layer.running_mean, reference.running_mean)
