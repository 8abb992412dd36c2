"""The merge-rule zoo (TIES, MagMax, Fisher merging, OPCM, EWC) against hand computations and closed forms."""


import sys
from pathlib import Path

import pytest
import torch
from conftest import small_config
from torch import nn

from holomerge_lab.experiment import metrics
from holomerge_lab.experiment.pipeline import run
from holomerge_lab.method.finetune import ewc_penalty
from holomerge_lab.method.fisher import diagonal_fisher
from holomerge_lab.method.merging import (
    MERGE_RULES,
    MergeSettings,
    TaskModel,
    fisher_weighted_merge,
    opcm_project,
    ties_merge,
)
from holomerge_lab.tour.viz import results_table

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
from fusion_bench_peer import fusion_bench_module  # noqa: E402


def task(params, fisher=None) -> TaskModel:
    return TaskModel(params=params, second_moment={}, steps=1, beta2=0.999, fisher=fisher)


def run_rule(name, models, theta0, fishers=None, **settings):
    carried = None
    for t, model in enumerate(models):
        fisher = None if fishers is None else fishers[t]
        carried = MERGE_RULES[name](
            carried, task(model, fisher), MergeSettings(theta0=theta0, task_index=t + 1, **settings)
        )
    return carried


# TIES: three task vectors of 5 entries, top_k = 0.4 (keep ⌊0.4·5⌋ = 2, plus any tie at the boundary)
TIES_VECTORS = [[3.0, -1.0, 2.0, 2.0, 0.0], [-4.0, 1.0, -1.0, 0.5, 0.0], [1.0, 2.0, -3.0, -2.0, 0.1]]
# trimmed (|τ| ≥ its 3rd smallest |τ|): [3,0,2,2,0] (a tie at 2 keeps three), [-4,1,-1,0,0], [0,2,-3,-2,0]
# Σ = [-1,3,-2,0,0] -> γ = [-1,1,-1,0,0]; Σγ = -1, so the zero γ become -1 (coordinate 3 is a sign tie, 2 vs -2)
# disjoint mean of the entries agreeing with γ: [-4, (1+2)/2, (-1-3)/2, -2, 0 (none agree)]
TIES_EXPECTED = [-4.0, 1.5, -2.0, -2.0, 0.0]


def test_ties_by_hand_with_trim_boundary_and_sign_tie():
    merged = ties_merge(torch.tensor(TIES_VECTORS, dtype=torch.float64), top_k=0.4)
    torch.testing.assert_close(merged, torch.tensor(TIES_EXPECTED, dtype=torch.float64))


def test_ties_rule_trims_over_all_parameters_together_and_scales():
    theta0 = {
        "a": torch.tensor([1.0, 2.0], dtype=torch.float64),
        "b": torch.tensor([0.5, -1.0, 3.0]).double(),
    }
    models = [  # keys are flattened in sorted order: a's two entries, then b's three
        {"a": theta0["a"] + torch.tensor(v[:2]).double(), "b": theta0["b"] + torch.tensor(v[2:]).double()}
        for v in TIES_VECTORS
    ]
    carried = run_rule("ties-store-all", models, theta0, top_k=0.4, ties_scale=0.5)
    expected = torch.tensor(TIES_EXPECTED, dtype=torch.float64)
    torch.testing.assert_close(carried["merged"]["a"], theta0["a"] + 0.5 * expected[:2])
    torch.testing.assert_close(carried["merged"]["b"], theta0["b"] + 0.5 * expected[2:])
    assert len(carried["task_vectors"]) == 3


def test_magmax_by_hand_later_task_wins_ties():
    theta0 = {"w": torch.tensor([1.0, 0.0, -1.0, 2.0])}
    first = {"w": theta0["w"] + torch.tensor([1.0, -3.0, 2.0, 0.5])}
    second = {"w": theta0["w"] + torch.tensor([-2.0, 3.0, 1.0, -0.5])}
    carried = run_rule("magmax", [first, second], theta0, magmax_scale=0.5)
    # |−2| > 1: −2;  |3| = |−3|: the later 3;  |1| < 2: 2;  |−0.5| = |0.5|: the later −0.5
    tau_max = torch.tensor([-2.0, 3.0, 2.0, -0.5])
    torch.testing.assert_close(carried["task_vector"]["w"], tau_max)
    torch.testing.assert_close(carried["merged"]["w"], theta0["w"] + 0.5 * tau_max)
    torch.testing.assert_close(carried["finetuned"]["w"], second["w"])  # the next task continues from θ(t)


def test_opcm_projection_is_orthogonal_to_the_kept_subspace():
    g = torch.Generator().manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=torch.float64))
    singular = torch.tensor([4.0, 3.0, 2.0, 1.0], dtype=torch.float64)
    merged_vector = u[:, :4] @ torch.diag(singular) @ v.T
    new = torch.randn(6, 4, generator=g, dtype=torch.float64)
    cleaned, rank = opcm_project(merged_vector, new, alpha=0.5)
    assert rank == 1  # cumulative mass 0.4, 0.7, ...: the first index above 0.5 is 1
    uk, vk = u[:, :4], v  # τ̄'s singular vectors (signs may differ from the SVD's: they cancel below)
    block = uk[:, :rank].T @ cleaned @ vk[:, :rank]
    torch.testing.assert_close(block, torch.zeros_like(block), atol=1e-12, rtol=0)
    diagonal = torch.einsum("mi,mn,ni->i", uk, cleaned, vk)
    torch.testing.assert_close(diagonal, torch.zeros(4, dtype=torch.float64), atol=1e-12, rtol=0)
    assert abs(float((cleaned * merged_vector).sum())) < 1e-12  # Frobenius-orthogonal to τ̄ itself
    # everything else of τ is kept: off-diagonal coefficients outside the top-left block are unchanged
    full_u = torch.linalg.svd(merged_vector, full_matrices=True).U
    before, after = full_u.T @ new @ v, full_u.T @ cleaned @ v
    keep = torch.ones(6, 4, dtype=torch.bool)
    keep[:rank, :rank] = False
    keep[range(4), range(4)] = False
    torch.testing.assert_close(after[keep], before[keep])


def test_opcm_one_task_returns_it_and_later_updates_keep_the_mean_norm():
    g = torch.Generator().manual_seed(1)
    theta0 = {
        "conv": torch.randn(5, 3, 1, 1, generator=g).double(),
        "b": torch.randn(5, generator=g).double(),
    }
    models = [
        {k: v + torch.randn(v.shape, generator=g).double() for k, v in theta0.items()} for _ in range(2)
    ]
    first = run_rule("opcm", models[:1], theta0)
    for k in theta0:
        torch.testing.assert_close(first["merged"][k], models[0][k])
    second = MERGE_RULES["opcm"](first, task(models[1]), MergeSettings(theta0=theta0, task_index=2))
    norms = [torch.linalg.vector_norm(torch.cat([(m[k] - theta0[k]).flatten() for k in m])) for m in models]
    merged_vector = {k: second["merged"][k] - theta0[k] for k in theta0}
    merged_norm = torch.linalg.vector_norm(torch.cat([v.flatten() for v in merged_vector.values()]))
    torch.testing.assert_close(merged_norm, (norms[0] + norms[1]) / 2)
    # the 1×1 convolution counts as a matrix: its update is orthogonal to the first task vector
    update = second["scalars"]["lambda"] * merged_vector["conv"] - (models[0]["conv"] - theta0["conv"])
    assert abs(float((update * (models[0]["conv"] - theta0["conv"])).sum())) < 1e-10


def test_fisher_rule_equals_fisher_merging_with_diagonal_fisher_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    theta0 = {k: v.detach().clone() for k, v in model.named_parameters()}
    x = torch.randn(30, 4, dtype=torch.float64)
    models, fishers = [], []
    for _ in range(3):
        params = {k: v + 0.5 * torch.randn_like(v) for k, v in theta0.items()}
        with torch.no_grad():
            for k, p in model.named_parameters():
                p.copy_(params[k])
        models.append(params)
        fishers.append(diagonal_fisher(model, x, kind="true"))
    floor = 1e-6
    carried = run_rule("fisher", models, theta0, fishers=fishers, fisher_floor=floor)
    # FusionBench's batch formula, written out: w_i = (F_i + m) / (‖F_i‖ + m), θ = Σ w_i θ_i / Σ w_i
    norms = [
        torch.linalg.vector_norm(torch.cat([f.flatten() for f in fisher.values()])) for fisher in fishers
    ]
    weights = [{k: (f[k] + floor) / (n + floor) for k in f} for f, n in zip(fishers, norms, strict=True)]
    for k in theta0:
        expected = sum(w[k] * m[k] for w, m in zip(weights, models, strict=True)) / sum(w[k] for w in weights)
        torch.testing.assert_close(carried["merged"][k], expected)
    # and the same as folding fisher_weighted_merge with α = 1/t over those weights
    merged, weight = models[0], weights[0]
    for t in (1, 2):
        merged, weight = fisher_weighted_merge(merged, models[t], weight, weights[t], 1.0 / (t + 1))
    for k in theta0:
        torch.testing.assert_close(carried["merged"][k], merged[k])
        torch.testing.assert_close(carried["weight"][k], weight[k])


def test_ewc_penalty_value_and_gradient_by_hand():
    g = torch.Generator().manual_seed(2)
    anchor = {"w": torch.randn(3, 2, generator=g).double(), "b": torch.randn(2, generator=g).double()}
    fisher = {k: torch.rand(v.shape, generator=g).double() for k, v in anchor.items()}
    params = {
        k: (v + torch.randn(v.shape, generator=g).double()).requires_grad_(True) for k, v in anchor.items()
    }
    strength = 7.0
    value = ewc_penalty(anchor, fisher, strength)(params)
    by_hand = sum(
        0.5
        * strength
        * fisher[k].flatten()[i].item()
        * (params[k].flatten()[i].item() - anchor[k].flatten()[i].item()) ** 2
        for k in anchor
        for i in range(anchor[k].numel())
    )
    assert value.item() == pytest.approx(by_hand, rel=1e-12)
    grads = torch.autograd.grad(value, list(params.values()))
    for (k, p), grad in zip(params.items(), grads, strict=True):
        torch.testing.assert_close(grad, strength * fisher[k] * (p.detach() - anchor[k]))


def test_ewc_rule_accumulates_the_fisher_and_serves_the_new_model():
    theta0 = {"w": torch.zeros(2)}
    models = [{"w": torch.tensor([1.0, 2.0])}, {"w": torch.tensor([3.0, 4.0])}]
    fishers = [{"w": torch.tensor([0.5, 1.0])}, {"w": torch.tensor([2.0, 0.25])}]
    carried = run_rule("ewc", models, theta0, fishers=fishers)
    torch.testing.assert_close(carried["merged"]["w"], models[1]["w"])
    torch.testing.assert_close(carried["weight"]["w"], torch.tensor([2.5, 1.25]))


@pytest.mark.parametrize("method", ["magmax", "fisher", "opcm", "ewc", "ties", "ties-store-all"])
def test_bytes_carried_constant_for_theta1_rules_linear_for_ties_store_all(method, small_prepared):
    result = run(small_config(method=method), small_prepared, progress=False)
    sizes = result.state_bytes
    assert len(sizes) == 3
    one_task_vector = metrics.state_bytes(small_prepared.theta0)
    if method == "ties-store-all":
        assert sizes[1] - sizes[0] == sizes[2] - sizes[1] == one_task_vector
        assert results_table([result])[0]["Θ(1)?"] == "no"
    else:
        assert sizes[0] == sizes[1] == sizes[2]
        assert results_table([result])[0]["Θ(1)?"] == "yes"


def test_opcm_projects_linear_weights_only_and_q_k_v_apart():
    """FusionBench's opcm projects nn.Linear weights (q, k, v are separate there); embeddings and 1-D tensors are
    merged as plain scaled task vectors."""
    from holomerge_lab.method.merging import opcm_blocks

    g = torch.Generator().manual_seed(2)
    names = {
        "visual.positional_embedding": (5, 4),
        "visual.ln_post.weight": (4,),
        "visual.transformer.resblocks.0.attn.in_proj_weight": (12, 4),
        "visual.transformer.resblocks.0.mlp.c_fc.weight": (6, 4),
    }
    theta0 = {k: torch.randn(shape, generator=g, dtype=torch.float64) for k, shape in names.items()}
    models = [{k: v + torch.randn(v.shape, generator=g, dtype=torch.float64) for k, v in theta0.items()}
              for _ in range(2)]  # fmt: skip
    first = run_rule("opcm", models[:1], theta0, opcm_alpha=0.5)
    second = MERGE_RULES["opcm"](
        first, task(models[1]), MergeSettings(theta0=theta0, task_index=2, opcm_alpha=0.5)
    )
    previous = {k: models[0][k] - theta0[k] for k in theta0}  # λ(1) = 1
    new = {k: models[1][k] - theta0[k] for k in theta0}
    qkv, fc = (
        "visual.transformer.resblocks.0.attn.in_proj_weight",
        "visual.transformer.resblocks.0.mlp.c_fc.weight",
    )
    expected = dict(previous)
    for k in theta0:
        expected[k] = previous[k] + new[k]  # unprojected: the positional embedding and the norm weight
    expected[fc] = previous[fc] + opcm_project(previous[fc], new[fc], 0.5)[0]
    expected[qkv] = previous[qkv] + torch.cat([
        opcm_project(p, n, 0.5)[0] for p, n in zip(previous[qkv].chunk(3), new[qkv].chunk(3), strict=True)
    ])  # fmt: skip
    norm = lambda d: torch.linalg.vector_norm(torch.cat([v.flatten() for v in d.values()]))  # noqa: E731
    lam = norm(expected) / ((norm(previous) + norm(new)) / 2)
    for k in theta0:
        torch.testing.assert_close(second["merged"][k], theta0[k] + expected[k] / lam)
    fused = opcm_project(previous[qkv], new[qkv], 0.5)[0]  # the whole 12×4 block as one matrix: not the same
    assert not torch.allclose(fused, expected[qkv] - previous[qkv])
    assert opcm_blocks("visual.positional_embedding", theta0["visual.positional_embedding"]) is None
    assert (
        opcm_blocks("visual.proj", torch.zeros(8, 4)) is None
        and opcm_blocks("visual.ln_post.weight", torch.ones(4)) is None
    )
    assert len(opcm_blocks(qkv, theta0[qkv])) == 3


def _fusion_bench_ties():
    """FusionBench's own TIES utilities."""
    return fusion_bench_module("fusion_bench.method.ties_merging.ties_merging_utils")


def _fusion_bench_continual_ties(theta0, models, scaling_factor=0.5, threshold=20):
    """The merge loop of FusionBench's `ContinualTiesMergingForCLIP.run` on state dicts, with its own functions."""
    reference = _fusion_bench_ties()
    merged = {k: v.clone() for k, v in theta0.items()}
    for index, model in enumerate(models):
        task_vector = {k: model[k] - theta0[k] for k in model}
        if index == 0:
            step = task_vector
        else:
            merged_vector = {k: merged[k] - theta0[k] for k in merged}
            rows = torch.vstack(
                [reference.state_dict_to_vector(merged_vector), reference.state_dict_to_vector(task_vector)]
            )
            flat = reference.ties_merging(rows, reset_thresh=threshold, merge_func="sum")
            step = reference.vector_to_state_dict(flat, merged)
        merged = {k: merged[k] + scaling_factor * step[k] for k in merged}
    return merged


def test_continual_ties_is_bit_exact_with_fusion_bench():
    generator = torch.Generator().manual_seed(3)
    shapes = {"block.weight": (6, 5), "block.bias": (6,), "head.weight": (3, 6), "a.scale": (4,)}
    theta0 = {k: torch.randn(shape, generator=generator) for k, shape in shapes.items()}
    models = [
        {k: v + 0.1 * torch.randn(v.shape, generator=generator) for k, v in theta0.items()} for _ in range(5)
    ]
    expected = _fusion_bench_continual_ties(theta0, models)
    ours = run_rule("ties", models, theta0)  # the defaults: λ = 0.5, k = 20 %
    assert set(ours) == {"merged"}  # Θ(1): nothing but the merged model is carried
    for k in theta0:
        assert torch.equal(ours["merged"][k], expected[k]), k
    store_all = run_rule("ties-store-all", models, theta0)
    assert not torch.equal(store_all["merged"]["block.weight"], expected["block.weight"])
