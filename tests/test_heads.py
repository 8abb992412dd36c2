"""Frozen heads against hand computations with loops."""

import math

import pytest
import torch

from holomerge_lab.errors import UserError
from holomerge_lab.models.heads import head_logits, prototype_head


def _unit(v):
    return v / math.sqrt(float((v * v).sum()))


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(30, 5, generator=g, dtype=torch.float64)
    labels = torch.tensor([3, 7, 9] * 10)
    center = torch.randn(5, generator=g, dtype=torch.float64)
    return emb, labels, center


@pytest.mark.parametrize("use_center", [False, True])
def test_prototype_head_matches_a_loop(data, use_center):
    emb, labels, center = data
    center = center if use_center else None
    classes = [9, 3]  # order of rows follows `classes`; class 7 left out
    head = prototype_head(emb, labels, classes, center=center)
    assert head.shape == (2, 5)
    for row, c in enumerate(classes):
        acc = torch.zeros(5, dtype=torch.float64)
        n = 0
        for e, y in zip(emb, labels, strict=True):
            if int(y) == c:
                acc += _unit(e - center if center is not None else e)
                n += 1
        torch.testing.assert_close(head[row].double(), _unit(acc / n), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("use_center", [False, True])
def test_head_logits_matches_a_loop(data, use_center):
    emb, labels, center = data
    center = center if use_center else None
    head = prototype_head(emb, labels, [3, 7, 9], center=center).double()
    logits = head_logits(emb, head, scale=10.0, center=center)
    assert logits.shape == (30, 3)
    for i in range(30):
        e = _unit(emb[i] - center if center is not None else emb[i])
        for j in range(3):
            assert abs(float(logits[i, j]) - 10.0 * float((e * head[j]).sum())) < 1e-9


def test_logits_scale_and_range(data):
    emb, labels, _ = data
    head = prototype_head(emb, labels, [3, 7, 9]).double()
    logits = head_logits(emb, head)  # default scale 32
    assert logits.abs().max() <= 32.0 + 1e-9
    # a class vector used as an embedding scores exactly the scale against itself
    torch.testing.assert_close(
        head_logits(head, head).diagonal(), torch.full((3,), 32.0, dtype=torch.float64)
    )


def test_head_logits_is_differentiable_in_embeddings(data):
    emb, labels, _ = data
    head = prototype_head(emb, labels, [3, 7, 9])
    x = emb.float().clone().requires_grad_(True)
    head_logits(x, head).logsumexp(-1).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_missing_class_is_a_user_error(data):
    emb, labels, _ = data
    with pytest.raises(UserError, match="4"):
        prototype_head(emb, labels, [3, 4])
