"""Alignment trains one parameter, leaves the rest, and brings features to the teacher."""

import pytest
import torch
from torch import nn

from holomerge_lab.errors import UserError
from holomerge_lab.method.align import align, feature_discrepancy
from holomerge_lab.method.linearize import forward_fn


def setup():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 6))
    params = {n: p.detach() for n, p in model.named_parameters()}
    teacher = {n: v + 0.3 * torch.randn_like(v) for n, v in params.items()}
    return forward_fn(model, params, tangent=False), params, teacher, torch.randn(256, 4)


@pytest.mark.parametrize("loss", ["mse", "l1", "cosine"])
def test_alignment_reduces_the_discrepancy_and_trains_one_parameter(loss):
    forward, params, teacher, x = setup()
    with torch.no_grad():
        target = forward(teacher, x)
        before = feature_discrepancy(forward(params, x), target, loss)
    aligned = align(forward, params, target, x, parameter="2.bias", loss=loss, steps=200, lr=1e-2)
    with torch.no_grad():
        after = feature_discrepancy(forward(aligned, x), target, loss)
    assert after < 0.8 * before
    assert not torch.equal(aligned["2.bias"], params["2.bias"])
    assert all(torch.equal(aligned[n], params[n]) for n in params if n != "2.bias")


def test_mse_bias_alignment_converges_to_the_mean_feature_gap():
    """For a bias on the output, the MSE optimum is the mean difference of teacher and student features."""
    forward, params, teacher, x = setup()
    with torch.no_grad():
        target = forward(teacher, x)
        gap = (target - forward(params, x)).mean(0)
    aligned = align(forward, params, target, x, parameter="2.bias", steps=1500, lr=1e-2, batch_size=256)
    torch.testing.assert_close(aligned["2.bias"] - params["2.bias"], gap, atol=2e-3, rtol=0)


def test_unknown_parameter_or_loss_is_a_user_error():
    forward, params, teacher, x = setup()
    with pytest.raises(UserError, match="2.bias"):
        align(forward, params, x, x, parameter="nope")
    with pytest.raises(UserError, match="cosine"):
        align(forward, params, x, x, parameter="2.bias", loss="huber")


def test_alignment_weight_decay_and_gradient_clip_by_hand():
    """AdamW's decoupled decay and the gradient-norm clip, against the update written out for two steps."""
    params = {"w": torch.tensor([2.0, -1.0])}
    inputs = torch.tensor([[1.0], [3.0]])
    teacher = torch.zeros(2, 2)

    def forward(p, x):  # features x·w: the MSE gradient scales with x, so the two batches differ in norm
        return x * p["w"]

    lr, decay, clip = 0.1, 0.5, 1.0
    # at the teacher's own features the loss has no gradient: only the decay moves w, by (1 − lr·decay) a step
    still = align(lambda p, x: forward(p, x) * 0 + teacher[: len(x)], params, teacher, inputs, parameter="w",
                  steps=3, lr=lr, batch_size=1, weight_decay=decay)  # fmt: skip
    torch.testing.assert_close(still["w"], params["w"] * (1 - lr * decay) ** 3)
    got = align(forward, params, teacher, inputs, parameter="w", steps=2, lr=lr, batch_size=2, weight_decay=decay,
                grad_clip=clip)  # fmt: skip
    w, m, v = params["w"].clone(), torch.zeros(2), torch.zeros(2)
    for k in (1, 2):
        g = (2 * (inputs * w - teacher) * inputs).sum(
            0
        ) / teacher.numel()  # d/dw of the MSE over both examples
        g = g * min(1.0, clip / float(g.norm()))
        w = w * (1 - lr * decay)
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        w = w - lr * (m / (1 - 0.9**k)) / ((v / (1 - 0.999**k)).sqrt() + 1e-8)
    torch.testing.assert_close(got["w"], w)
