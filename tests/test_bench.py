"""The measurements of bench.py: the op-by-op true Fisher against a per-example loop, bytes carried constant in T,
a warm feature cache that never runs the trunk. Nothing here asserts a wall time."""

import copy

import pytest
import torch
from conftest import small_config
from torch import nn

from holomerge_lab.analysis import bench
from holomerge_lab.method import fisher_ops
from holomerge_lab.method.fisher import diagonal_fisher, exact_routes, functional_diagonal_fisher


def conv_model(seed: int) -> nn.Module:
    """1×1 convolutions, a padded depthwise convolution (all closed form), frozen BatchNorm, an in-place ReLU6."""
    torch.manual_seed(seed)
    bn = nn.BatchNorm2d(5)
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.5, 2.0)
    bn.weight.data.normal_()
    bn.requires_grad_(False)
    return nn.Sequential(
        nn.Conv2d(3, 5, 1, bias=False), bn, nn.ReLU6(inplace=True), nn.Conv2d(5, 5, 3, padding=1, groups=5),
        nn.Conv2d(5, 4, 1), nn.Flatten(), nn.LazyLinear(3),
    ).double().eval()  # fmt: skip


def assert_equal_fishers(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for n in a:
        torch.testing.assert_close(a[n], b[n], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("overhead", [-(10**6), 10**6])  # forces per-example gradients (in pieces) / pairs
@pytest.mark.parametrize("size", [2, 4])
def test_op_by_op_true_fisher_equals_a_per_example_loop(size, overhead, monkeypatch):
    monkeypatch.setattr(fisher_ops, "PER_EXAMPLE_OVERHEAD", overhead)
    monkeypatch.setattr(fisher_ops, "PER_EXAMPLE_NUMBERS", 64)  # a few examples at a time
    model = conv_model(size)
    x = torch.randn(13, 3, size, size, dtype=torch.float64)
    model(x)  # materialise the lazy layer
    assert set(exact_routes(model, x).values()) == {"conv2d", "linear"}
    fisher = diagonal_fisher(model, x, chunk_size=5)
    assert_equal_fishers(fisher, bench.fisher_by_loop(model, x))


def test_op_by_op_true_fisher_on_linear_layers_over_positions():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Flatten(), nn.Linear(12, 3)).double()
    x = torch.randn(9, 2, 4, dtype=torch.float64)  # two positions per example through the first layer
    assert set(exact_routes(model, x).values()) == {"linear"}
    assert_equal_fishers(diagonal_fisher(model, x, chunk_size=4), bench.fisher_by_loop(model, x))


def test_falls_back_where_op_by_op_is_not_exact():
    torch.manual_seed(2)
    layer = nn.Linear(3, 3).double()
    shared = nn.Sequential(layer, nn.Tanh(), layer)  # one module run twice
    x = torch.randn(6, 3, dtype=torch.float64)
    assert set(exact_routes(shared, x).values()) == {"per-example"}
    assert_equal_fishers(diagonal_fisher(shared, x), bench.fisher_by_loop(shared, x))
    assert all(type(p) is nn.Parameter for p in shared.parameters())  # the model is left as it was
    training = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).double().train()
    assert set(exact_routes(training, x).values()) == {"per-example"}  # batch statistics couple the examples


def test_true_fisher_of_the_embedded_top_equals_the_loop(small_prepared):
    """The real EfficientNet-Lite0 top and a task's frozen head, in float64: toolkit == loop == vmap route."""
    prep = small_prepared
    _, inputs, _ = bench.task_objective(prep, 0, tangent=False)
    top = copy.deepcopy(prep.backbone.top).double()
    model = bench.TaskLogits(top, prep.heads[0].double(), prep.config.logit_scale, None)
    x = inputs[:10].double()
    fisher = diagonal_fisher(model, x, chunk_size=4)
    assert set(fisher) == {f"top.{n}" for n in prep.backbone.trainable}
    assert_equal_fishers(fisher, bench.fisher_by_loop(model, x))
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    vmapped = functional_diagonal_fisher(
        lambda p, v: torch.func.functional_call(model, p, (v,)), params, x, chunk_size=4
    )
    assert_equal_fishers(fisher, vmapped)


def test_bytes_carried_do_not_grow_with_the_number_of_tasks():
    out = bench.memory_by_tasks(
        (2, 4), methods=("holistic", "average", "ewc"), train_per_task=20, test_per_task=10
    )
    assert out["carried_constant"] == {"holistic": True, "average": True, "ewc": True}
    assert out["carried_bytes_by_tasks"][2] == out["carried_bytes_by_tasks"][4] > 0
    assert all(r["peak_rss"] >= r["rss_after_prepare"] > 0 for r in out["rows"])


def test_a_warm_feature_cache_never_runs_the_trunk():
    out = bench.trunk_cache(small_config(tasks=2))
    assert out["cold_trunk_images"] > 0
    assert out["warm_trunk_images"] == 0


def test_notebook_seconds_reads_the_timings_file(tmp_path):
    path = tmp_path / "timings.tsv"
    path.write_text("00_tour.ipynb\t12.5\n01_tangent_space.ipynb\t30.0\n")
    assert bench.notebook_seconds(path) == {"00_tour.ipynb": 12.5, "01_tangent_space.ipynb": 30.0}
    assert bench.notebook_seconds(tmp_path / "absent.tsv") == {}
