"""Stage 1: the first-order Taylor expansion of a network around its pre-trained weights.

    f_lin(x; θ) = f(x; θ0) + J_θ f(x; θ0) · (θ − θ0)

One forward-mode pass (`torch.func.jvp`) gives both terms. The model is then linear in its weights, so task
vectors add without the non-linear interference that makes loss barriers (Ortiz-Jimenez et al., 2023).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping

from torch import Tensor, nn
from torch.func import functional_call, jvp
from torch.nn.attention import SDPBackend, sdpa_kernel


def trainable_names(module: nn.Module) -> list[str]:
    """The parameters fine-tuning moves: those with `requires_grad`."""
    return [name for name, p in module.named_parameters() if p.requires_grad]


def linearized_forward(
    module: nn.Module, theta0: Mapping[str, Tensor], theta: Mapping[str, Tensor], *args: Tensor
) -> Tensor:
    """f(x; θ0) + J f(x; θ0)·(θ − θ0) for the names in `theta0`; every other parameter and buffer stays as in
    `module`. Attention runs on the MATH backend, the only one forward-mode AD goes through."""
    names = list(theta0)
    primal = tuple(theta0[n] for n in names)
    tangent = tuple(theta[n] - theta0[n] for n in names)

    def f(*values: Tensor) -> Tensor:
        return functional_call(module, dict(zip(names, values, strict=True)), args)

    with sdpa_kernel(SDPBackend.MATH):
        out, out_dot = jvp(f, primal, tangent)
    return out + out_dot


class LinearizedModel(nn.Module):
    """An `nn.Module` whose forward is f_lin(x; θ).

    Its trainable parameters are θ (they start as copies of θ0, the module's own trainable weights); θ0 lives in a
    frozen copy of the module. Fine-tune it like any model: gradients reach θ only through the jvp's tangent.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.names = trainable_names(module)
        self.model = module  # its trainable parameters are θ
        self.model0 = copy.deepcopy(module).requires_grad_(False)  # its parameters are θ0

    def theta0(self) -> dict[str, Tensor]:
        frozen = dict(self.model0.named_parameters())
        return {n: frozen[n] for n in self.names}

    def theta(self) -> dict[str, Tensor]:
        params = dict(self.model.named_parameters())
        return {n: params[n] for n in self.names}

    def forward(self, *args: Tensor) -> Tensor:
        return linearized_forward(self.model0, self.theta0(), self.theta(), *args)


def forward_fn(module: nn.Module, theta0: Mapping[str, Tensor], tangent: bool) -> Callable[..., Tensor]:
    """A function `(params, *inputs) -> outputs` evaluating f(x; params) or f_lin(x; params) around θ0.

    Evaluation of a merged model uses the same function the task models were trained as: a tangent-trained
    model is a linear model, and merging it is only meaningful as one.
    """
    if tangent:
        return lambda params, *x: linearized_forward(module, theta0, params, *x)
    return lambda params, *x: functional_call(module, dict(params), x)
