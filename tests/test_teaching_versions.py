"""Each teaching version (method/teaching.py, at most 15 lines, printed in the notebooks) gives the production
function's numbers on random inputs."""

import inspect

import pytest
import torch
from torch import nn

from holomerge_lab.method import align, finetune, linearize, merging, teaching


def _model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    return model, {n: p.detach().clone() for n, p in model.named_parameters()}


def _moved(theta0, scale=0.1):
    return {n: p + scale * torch.randn_like(p) for n, p in theta0.items()}


def test_linearized_forward_equals_the_production_one():
    model, theta0 = _model()
    theta, x = _moved(theta0), torch.randn(5, 6)
    assert torch.allclose(teaching.linearized_forward(model, theta0, theta, x),
                          linearize.linearized_forward(model, theta0, theta, x), atol=1e-6)  # fmt: skip


@pytest.mark.parametrize("tangent", [False, True])
def test_fine_tune_equals_the_production_one_on_its_batches(tangent):
    model, theta0 = _model()
    inputs, labels = torch.randn(40, 6), torch.randint(0, 3, (40,))
    forward = linearize.forward_fn(model, theta0, tangent=tangent)
    result = finetune.fine_tune(forward, theta0, inputs, labels, lambda z: z, steps=7, lr=1e-2, batch_size=16, seed=3)
    drawn = [(inputs[b], labels[b]) for b in finetune.batches(40, 16, 7, 3)]
    params, v = teaching.fine_tune(forward, theta0, drawn, lr=1e-2)
    for name in theta0:
        assert torch.allclose(params[name], result.params[name], atol=1e-6), name
        assert torch.allclose(v[name], result.second_moment[name], atol=1e-9), name


def test_v_weighted_merge_equals_the_authors_rule():
    _, theta0 = _model()
    prev, new = _moved(theta0), _moved(theta0)
    f_bar = {n: torch.rand_like(p) + 1e-3 for n, p in theta0.items()}
    v = {n: torch.rand_like(p) + 1e-3 for n, p in theta0.items()}
    merged, carried = teaching.v_weighted_merge(prev, f_bar, new, v, 0.4)
    expected, expected_carried = merging.fisher_weighted_merge(prev, new, f_bar, v, 0.4)
    for name in theta0:
        assert torch.allclose(merged[name], expected[name], atol=1e-6), name
        assert torch.allclose(carried[name], expected_carried[name], atol=1e-7), name


def test_alignment_equals_the_production_one():
    model, theta0 = _model()
    forward = linearize.forward_fn(model, theta0, tangent=False)
    x, merged = torch.randn(24, 6), _moved(theta0)
    with torch.no_grad():
        teacher = forward(theta0, x)
    bias = "2.bias"
    mine = teaching.align(forward, merged, bias, teacher, x, lr=1e-2, steps=5)
    theirs = align.align(forward, merged, teacher, x, parameter=bias, steps=5, lr=1e-2, batch_size=24)
    assert torch.allclose(mine[bias], theirs[bias], atol=1e-6)
    assert all(torch.equal(mine[n], merged[n]) for n in merged if n != bias)


def test_every_teaching_version_fits_on_the_page():
    for name, function in inspect.getmembers(teaching, inspect.isfunction):
        if function.__module__ == teaching.__name__:
            assert len(inspect.getsource(function).splitlines()) <= 15, name
