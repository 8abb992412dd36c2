"""Alignment trains one parameter, leaves the rest, and brings features to the teacher."""

import pytest
import torch
from torch import nn

from holomerge_lab.align import align, feature_discrepancy
from holomerge_lab.errors import UserError
from holomerge_lab.linearize import forward_fn


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
