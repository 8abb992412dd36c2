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
    assert set(summary) == {"paths", "controls", "maps", "numbers", "linearity"}
    assert set(summary["paths"]["tangent"]) == {"alpha", "loss", "accuracy", "accuracy task 1", "accuracy task 2",
                                                "loss task 1", "loss task 2"}  # fmt: skip
    assert set(summary["controls"]) == {"standard", "tangent"} and "models" not in summary["controls"]["tangent"]
    assert set(summary["maps"]) == {"standard", "tangent", "standard, equal ‖τ‖", "tangent, equal ‖τ‖"}
    tau = {n: [landscape.task_vector(m, prep.theta0) for m in measured["paths"][n]["models"]]
           for n in ("standard", "tangent")}  # fmt: skip
    equal = [landscape.common_norm([tau["standard"][t], tau["tangent"][t]])[1] for t in range(2)]  # the tangent ones
    predict = landscape.task_predictor(prep, measured["paths"]["tangent"]["forward"], [0, 1])
    assert np.array_equal(landscape.vector_map(predict, prep.theta0, equal, [0.0, 1.0]),
                          summary["maps"]["tangent, equal ‖τ‖"])  # fmt: skip
    numbers = summary["numbers"]["tangent"]
    assert numbers["control midpoint drop"] == pytest.approx(
        landscape.midpoint_drop(summary["controls"]["tangent"], 0, None))
    assert numbers["task 2 loss barrier"] == pytest.approx(
        landscape.barrier_height([0.0, 0.5, 1.0], summary["paths"]["tangent"]["loss task 2"]))
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


def test_common_norm_keeps_directions_and_equalises_lengths():
    a = {"w": torch.tensor([3.0, 4.0]), "v": torch.tensor([0.0])}  # norm 5
    b = {"w": torch.tensor([0.0, 0.0]), "v": torch.tensor([1.0])}  # norm 1
    ra, rb = landscape.common_norm([a, b])  # both to (5 + 1) / 2 = 3
    assert landscape.vector_norm(ra) == pytest.approx(3.0) and landscape.vector_norm(rb) == pytest.approx(3.0)
    assert torch.allclose(ra["w"], torch.tensor([1.8, 2.4])) and torch.allclose(rb["v"], torch.tensor([3.0]))


def test_vector_map_is_the_disentanglement_error_at_each_point():
    torch.manual_seed(2)
    x1, x2 = torch.randn(30, 3), torch.randn(20, 3)
    theta0 = {"w": torch.randn(3)}
    vectors = [{"w": torch.randn(3)}, {"w": torch.randn(3)}]
    alphas = [0.0, 0.5, 1.5]
    grid = landscape.vector_map(_sign_predict([x1, x2]), theta0, vectors, alphas)
    for i, a1 in enumerate(alphas):
        for j, a2 in enumerate(alphas):
            expected = landscape.disentanglement_error(_sign_predict([x1, x2]), theta0, vectors, [a1, a2])
            assert grid[i, j] == pytest.approx(expected)


def test_midpoint_drop_and_value_at_by_hand():
    path = {"alpha": [0.0, 0.25, 0.75, 1.0], "accuracy task 1": [0.9, 0.8, 0.4, 0.2],
            "accuracy task 2": [0.1, 0.5, 0.7, 0.8]}  # fmt: skip
    assert landscape.value_at(path, "accuracy task 1", 0.5) == pytest.approx(0.6)  # between 0.8 and 0.4
    assert landscape.midpoint_drop(path, 0, 0.0) == pytest.approx(0.9 - 0.6)
    assert landscape.midpoint_drop(path, 1, 1.0) == pytest.approx(0.8 - 0.6)
    assert landscape.midpoint_drop(path, 0, None) == pytest.approx((0.9 + 0.2) / 2 - 0.6)


def test_per_task_losses_split_the_joint_loss(small_prepared):
    """Each task's loss is the cross-entropy on its part of the joint test set: weighted by the parts' sizes, they
    average to the joint loss."""
    prep = small_prepared
    forward = forward_fn(prep.backbone.top, prep.theta0, tangent=False)
    a, _ = fine_tune_task(prep, 0, tangent=False)
    path = landscape.pair_path(prep, forward, a.params, prep.theta0, [0, 2], [0.0, 0.3, 1.0])
    sizes = [len(prep.stream.tasks[t].test_labels) for t in (0, 2)]
    for i in range(3):
        mixed = (sizes[0] * path["loss task 1"][i] + sizes[1] * path["loss task 3"][i]) / sum(sizes)
        assert mixed == pytest.approx(path["loss"][i], rel=1e-5)


def test_control_path_pairs_two_fine_tunings_of_one_task(small_prepared):
    """The control's second end is the same task fine-tuned with the seed moved by CONTROL_SEED; it is walked on the
    pair's joint test set like the pair itself."""
    import dataclasses

    prep, config = small_prepared, small_config(steps=3)
    a, _ = fine_tune_task(prep, 0, tangent=True, config=config)
    control = landscape.control_path(prep, (0, 1), a.params, [0.0, 0.5, 1.0], tangent=True, config=config)
    again, _ = fine_tune_task(prep, 0, tangent=True,
                              config=dataclasses.replace(config, seed=config.resolve().seed + landscape.CONTROL_SEED))  # fmt: skip
    assert all(torch.equal(again.params[k], control["models"][1][k]) for k in again.params)
    assert not all(torch.equal(again.params[k], a.params[k]) for k in a.params)  # other mini-batches
    walked = landscape.pair_path(prep, control["forward"], a.params, again.params, [0, 1], [0.0, 0.5, 1.0])
    assert {k: control[k] for k in walked} == walked


def test_per_seed_reads_one_number_per_seed():
    by_seed = {2: {"numbers": {"tangent": {"q": 0.5}}}, 0: {"numbers": {"tangent": {"q": 1.5}}}}
    assert landscape.per_seed(by_seed, "tangent", "q") == {0: 1.5, 2: 0.5}
