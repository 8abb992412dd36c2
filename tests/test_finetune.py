"""Fine-tuning guards and schedule."""

import pytest
import torch
from torch import nn

from holomerge_lab.errors import UserError
from holomerge_lab.method.finetune import batches, fine_tune, lr_factor
from holomerge_lab.method.linearize import forward_fn


def test_a_diverging_fine_tune_is_reported_with_what_to_change():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    theta0 = {n: p.detach() for n, p in model.named_parameters()}
    x, y = torch.randn(32, 4) * 1e3, torch.randint(0, 3, (32,))
    with pytest.raises(UserError, match=r"diverged at step \d+ .*lower the learning rate"):
        fine_tune(forward_fn(model, theta0, tangent=False), theta0, x, y, lambda z: z, steps=50, lr=1e36)


def test_batches_cover_every_example_once_per_epoch_and_repeat_per_seed():
    first = list(batches(10, 3, 6, seed=1))
    assert all(len(b) == 3 for b in first)
    epoch = torch.cat(first[:3])
    assert len(set(epoch.tolist())) == 9  # three disjoint batches; the 10th example waits for the next epoch
    assert all(torch.equal(a, b) for a, b in zip(first, batches(10, 3, 6, seed=1), strict=True))


def test_warmup_then_cosine_schedule():
    assert lr_factor(0, 100, 10, cosine=True) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, cosine=True) == pytest.approx(1.0)
    assert lr_factor(10, 100, 10, cosine=True) == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, cosine=True) == pytest.approx(0.5)
    assert lr_factor(55, 100, 10, cosine=False) == 1.0
