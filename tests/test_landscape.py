"""Barriers, task-vector sums and the disentanglement error against hand computations; paths on a real run."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import small_config

from holomerge_lab.analysis import landscape
from holomerge_lab.experiment.evaluation import evaluate
from holomerge_lab.experiment.training import fine_tune_task
from holomerge_lab.method.linearize import forward_fn
from holomerge_lab.tour import shipped


def test_barrier_height_by_hand():
    assert landscape.barrier_height([0, 0.5, 1], [1.0, 3.0, 2.0]) == pytest.approx(1.5)  # 3 − chord 1.5
    assert landscape.barrier_height([0, 0.5, 1], [0.9, 0.5, 0.7], higher_is_better=True) == pytest.approx(0.3)
    assert landscape.barrier_height([0, 0.5, 1], [1.0, 0.2, 2.0]) == 0.0  # below the chord: no barrier


def test_add_task_vectors_by_hand():
    theta0 = {"w": torch.tensor([1.0, 2.0])}
    t1, t2 = {"w": torch.tensor([3.0, 2.0])}, {"w": torch.tensor([1.0, 6.0])}
    vectors = [landscape.task_vector(t1, theta0), landscape.task_vector(t2, theta0)]
    combined = landscape.add_task_vectors(theta0, vectors, [0.5, 0.25])
    assert torch.allclose(combined["w"], torch.tensor([1.0 + 0.5 * 2.0, 2.0 + 0.25 * 4.0]))


def _sign_predict(datasets):
    return lambda t, p: (datasets[t] @ p["w"] > 0).long()


def test_disentanglement_zero_when_task_vectors_touch_disjoint_inputs():
    torch.manual_seed(0)
    x1 = torch.cat([torch.randn(50, 2), torch.zeros(50, 2)], 1)  # task 1 uses inputs 0-1 only
    x2 = torch.cat([torch.zeros(50, 2), torch.randn(50, 2)], 1)  # task 2 uses inputs 2-3 only
    theta0 = {"w": torch.randn(4)}
    theta1 = {"w": theta0["w"] + torch.tensor([3.0, -2.0, 0.0, 0.0])}
    theta2 = {"w": theta0["w"] + torch.tensor([0.0, 0.0, -4.0, 1.0])}
    grid = landscape.disentanglement_map(
        _sign_predict([x1, x2]), theta0, theta1, theta2, [0.0, 0.5, 1.0, 2.0]
    )
    assert np.all(grid == 0)


def test_disentanglement_matches_a_direct_count():
    torch.manual_seed(1)
    x1, x2 = torch.randn(40, 3), torch.randn(30, 3)
    theta0, theta1, theta2 = ({"w": torch.randn(3)} for _ in range(3))
    alphas = [0.0, 0.7, 1.5]
    grid = landscape.disentanglement_map(_sign_predict([x1, x2]), theta0, theta1, theta2, alphas)
    w0, tau1, tau2 = (t["w"].numpy() for t in (theta0, theta1, theta2))
    tau1, tau2 = tau1 - w0, tau2 - w0
    for i, a1 in enumerate(alphas):
        for j, a2 in enumerate(alphas):
            both = w0 + a1 * tau1 + a2 * tau2
            expected = np.mean((x1.numpy() @ both > 0) != (x1.numpy() @ (w0 + a1 * tau1) > 0)) + np.mean(
                (x2.numpy() @ both > 0) != (x2.numpy() @ (w0 + a2 * tau2) > 0)
            )
            assert grid[i, j] == pytest.approx(expected)
    assert grid[0, 0] == 0


def test_pair_path_ends_are_the_two_models(small_prepared):
    prep = small_prepared
    forward = forward_fn(prep.backbone.top, prep.theta0, tangent=False)
    a, _ = fine_tune_task(prep, 0, tangent=False)
    b, _ = fine_tune_task(prep, 1, tangent=False)
    path = landscape.pair_path(prep, forward, a.params, b.params, [0, 1], landscape.straight_path(3))
    assert path["alpha"] == [0.0, 0.5, 1.0]
    for end, model in ((0, a), (-1, b)):
        per_task, joint = evaluate(prep, forward, model.params, 1)
        assert path["accuracy"][end] == pytest.approx(joint)
        assert [path["accuracy task 1"][end], path["accuracy task 2"][end]] == pytest.approx(per_task)
    # the loss, computed here from the embeddings and the two tasks' head by hand
    from holomerge_lab.models.heads import head_logits

    features = torch.cat(prep.test_features[:2])
    classes = [*prep.stream.tasks[0].classes, *prep.stream.tasks[1].classes]
    labels = torch.cat([t.test_labels for t in prep.stream.tasks[:2]])
    rows = torch.tensor([classes.index(int(y)) for y in labels])
    with torch.no_grad():
        logits = head_logits(forward(a.params, features), torch.cat(prep.heads[:2]), prep.config.logit_scale)
    assert path["loss"][0] == pytest.approx(float(F.cross_entropy(logits, rows)), rel=1e-5)
    flat = landscape.pair_path(prep, forward, a.params, a.params, [0, 1], [0.0, 0.5, 1.0])
    assert landscape.barrier_height(flat["alpha"], flat["loss"]) == pytest.approx(0.0, abs=1e-6)


def test_task_predictor_uses_each_tasks_own_head(small_prepared):
    prep = small_prepared
    forward = forward_fn(prep.backbone.top, prep.theta0, tangent=False)
    predict = landscape.task_predictor(prep, forward, [2])
    from holomerge_lab.models.heads import head_logits

    with torch.no_grad():
        logits = head_logits(
            forward(prep.theta0, prep.test_features[2]), prep.heads[2], prep.config.logit_scale
        )
    assert torch.equal(predict(0, prep.theta0), logits.argmax(1))


def test_standard_and_tangent_paths_walk_the_fine_tuned_pairs(small_prepared):
    prep = small_prepared
    paths = landscape.standard_and_tangent_paths(prep, [0, 2], [0.0, 1.0])
    for name, tangent in (("standard", False), ("tangent", True)):
        b, _ = fine_tune_task(prep, 2, tangent=tangent)
        assert all(torch.equal(b.params[k], paths[name]["models"][1][k]) for k in b.params)
        assert paths[name]["accuracy task 3"][-1] == pytest.approx(
            landscape.pair_path(prep, paths[name]["forward"], b.params, b.params, [0, 2], [0.0])[
                "accuracy task 3"
            ][0]
        )
    heights = landscape.barriers(paths)
    assert (
        set(heights) == {"standard", "tangent"} and heights["standard"]["loss barrier"] == 0.0
    )  # two points


def test_jacobian_movement_is_the_explicit_jacobian_times_the_vector():
    """‖J(x)·τ‖ from one jvp against the Jacobian formed by reverse mode (torch.func.jacrev), flattened by hand."""
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 4))
    theta0 = {n: p.detach().clone() for n, p in module.named_parameters()}
    vector = {n: torch.randn_like(p) for n, p in theta0.items() if n.startswith("0.")}  # first layer only
    inputs = torch.randn(7, 3)
    got = landscape.jacobian_movement(module, theta0, vector, inputs, batch_size=3)
    for i, x in enumerate(inputs):
        jac = torch.func.jacrev(
            lambda p, x=x: torch.func.functional_call(module, {**theta0, **p}, (x,))
        )({n: theta0[n] for n in vector})
        moved = sum(jac[n].reshape(4, -1) @ vector[n].flatten() for n in vector)
        assert got[i] == pytest.approx(float(moved.norm()), rel=1e-5)


def test_tangent_outputs_move_by_the_jacobian_of_the_other_vector(small_prepared):
    """In f_lin, adding τ2 to θ0 + τ1 moves every output by J(x)·τ2, not by zero: linearity is not localisation."""
    prep = small_prepared
    forward = forward_fn(prep.backbone.top, prep.theta0, tangent=True)
    a, _ = fine_tune_task(prep, 0, tangent=True)
    b, _ = fine_tune_task(prep, 1, tangent=True)
    tau1, tau2 = landscape.task_vector(a.params, prep.theta0), landscape.task_vector(b.params, prep.theta0)
    x = prep.test_features[0]
    with torch.no_grad():
        moved = forward(landscape.add_task_vectors(prep.theta0, [tau1, tau2], [1, 1]), x) - forward(a.params, x)
    expected = landscape.jacobian_movement(prep.backbone.top, prep.theta0, tau2, x)
    assert torch.allclose(moved.norm(dim=1), expected, rtol=1e-3, atol=1e-5)
    assert expected.mean() > 0
    check = landscape.linearity_check(prep, forward, a.params, b.params, 0)  # the same two vectors, packaged
    assert torch.equal(check["moved"], moved.norm(dim=1)) and torch.equal(check["jacobian"], expected)


def test_pair_summary_keeps_the_small_part_and_ships(small_prepared):
    """The summary holds the paths' lists, the maps, the numbers and the linearity check; no models, no forward
    functions; it survives the shipped bundle's JSON round trip. `config` sets the fine-tuning (here 3 steps)."""
    prep, config = small_prepared, small_config(steps=3)
    measured = landscape.pair_measurements(prep, (0, 1), [0.0, 0.5, 1.0], [0.0, 1.0], config=config)
    summary = landscape.pair_summary(prep, (0, 1), measured)
    assert set(summary) == {"paths", "maps", "numbers", "linearity"}
    assert set(summary["paths"]["tangent"]) == {"alpha", "loss", "accuracy", "accuracy task 1", "accuracy task 2"}
    a, _ = fine_tune_task(prep, 0, tangent=False, config=config)
    assert summary["numbers"]["standard"]["‖τ1‖"] == pytest.approx(
        landscape.vector_norm(landscape.task_vector(a.params, prep.theta0))
    )
    tangent = measured["paths"]["tangent"]
    check = landscape.linearity_check(prep, tangent["forward"], *tangent["models"], 0)
    assert torch.equal(summary["linearity"]["moved"], check["moved"])
    back = shipped.decode(json.loads(json.dumps(shipped.encode(summary))))
    assert back["paths"] == summary["paths"] and back["numbers"] == summary["numbers"]
    assert all(np.array_equal(back["maps"][n], summary["maps"][n]) for n in summary["maps"])
    assert torch.equal(back["linearity"]["jacobian"], summary["linearity"]["jacobian"])
    assert torch.allclose(back["linearity"]["moved"], back["linearity"]["jacobian"], rtol=1e-3, atol=1e-5)


def test_vector_norm_by_hand():
    assert landscape.vector_norm({"a": torch.tensor([3.0]), "b": torch.tensor([[4.0, 0.0]])}) == pytest.approx(5.0)


def test_compare_over_seeds_pairs_the_seeds():
    numbers = {
        s: {"standard": {"barrier": base}, "tangent": {"barrier": base + gap}}
        for s, base, gap in ((0, 0.5, -0.2), (1, 0.2, -0.25), (2, 0.9, -0.22))
    }
    (row,) = landscape.compare_over_seeds(numbers)
    from holomerge_lab.analysis import stats

    diffs = stats.interval([(0.5 - 0.2) - 0.5, (0.2 - 0.25) - 0.2, (0.9 - 0.22) - 0.9])
    assert row["tangent − standard"] == stats.format_interval(diffs, signed=True)
    assert row["standard"] == stats.format_interval(stats.interval([0.5, 0.2, 0.9]))
    assert row["seeds agreeing"] == "3/3" and row["verdict"] == "tangent lower"
