"""A frozen BatchNorm whose forward-mode derivative is the affine map it is, computed without torch's generic rule.

In eval mode with frozen statistics and affine parameters, BatchNorm is y = (x − μ)/σ · γ + β, so the tangent of
its output is ẏ = (ẋ/σ)·γ. torch's rule (`batch_norm_jvp`) computes exactly that product, but it also forms
(x − μ)/σ for γ's tangent and adds γ's and β's tangents as zero tensors, whose output shapes torch works out through
its Python reference implementations on every call. At the tour's sizes that overhead was an eighth of a panel's
live press: notebook 00's three seeds take 0.87× as long without it (benchmarks/RESULTS.md,
`python benchmarks/bench_press.py`).

`TangentBatchNorm2d` gives the same numbers bit for bit (tests/test_frozen_batchnorm.py): the output is torch's own
BatchNorm kernel on the primal, the tangent the same two products in the same order, (ẋ · 1/σ) · γ, with
1/σ formed as torch forms it; backward mode reaches ẋ through the same two products. Anything else (a tangent on
γ or β, training mode, no tangent at all) goes to `nn.BatchNorm2d.forward` unchanged.
"""

from __future__ import annotations

import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor, nn


class TangentBatchNorm2d(nn.BatchNorm2d):
    """`nn.BatchNorm2d` with the frozen layer's tangent computed directly (same state dict, same numbers)."""

    def forward(self, x: Tensor) -> Tensor:
        primal, tangent = fwAD.unpack_dual(x)
        if tangent is None or not self._frozen_affine():
            return super().forward(x)
        out = super().forward(primal)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        sigma = torch.sqrt(self.running_var + self.eps)
        inverse = torch.ones_like(sigma).div_(sigma)  # torch's `1 / sqrt(var + eps)` in batch_norm_jvp
        return fwAD.make_dual(out, tangent * inverse.view(shape) * self.weight.view(shape))

    def _frozen_affine(self) -> bool:
        """Eval mode on running statistics, with γ and β present and without tangents of their own."""
        if self.training or not self.track_running_stats or self.weight is None or self.bias is None:
            return False
        return all(fwAD.unpack_dual(p).tangent is None for p in (self.weight, self.bias))


def with_tangent_batchnorm(module: nn.Module) -> nn.Module:
    """Every `nn.BatchNorm2d` in `module` becomes a `TangentBatchNorm2d` in place (same object, same state)."""
    for layer in module.modules():
        if type(layer) is nn.BatchNorm2d:
            layer.__class__ = TangentBatchNorm2d
    return module
