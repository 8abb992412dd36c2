"""The continual loop end to end on real data (8×8 digits) through the real backbone."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from conftest import small_config

from holomerge_lab.errors import UserError
from holomerge_lab.experiment.config import METHODS, PRESETS, RunConfig
from holomerge_lab.experiment.evaluation import evaluate
from holomerge_lab.experiment.pipeline import DEFAULT_METHODS, compare_configs, prepare, run
from holomerge_lab.method.linearize import forward_fn
from holomerge_lab.method.merging import MergeSettings

KEYS = {"method", "stream", "backbone", "stages", "seed", "acc_matrix", "acc", "acc_task_mean", "acc_pooled", "bwt",
        "forgetting", "forgetting_since_learned", "state_bytes", "seconds"}  # fmt: skip


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_runs_and_reports(method, small_prepared):
    result = run(dataclasses.replace(small_config(), method=method), small_prepared, progress=False)
    n = 3
    assert result.acc_matrix.shape == (n, n)
    assert np.all(np.isnan(result.acc_matrix[np.triu_indices(n, 1)]))
    assert np.all((result.acc_matrix[np.tril_indices(n)] >= 0) & (result.acc_matrix[np.tril_indices(n)] <= 1))
    document = json.loads(json.dumps(result.to_json()))
    assert KEYS <= set(document)
    assert document["acc_matrix"][0][1] is None and len(document["state_bytes"]) == n
    # Θ(1): what is carried between tasks does not grow with the number of tasks, except for TIES store-all,
    # which keeps every task vector (tests/test_merging_zoo.py checks that it grows linearly)
    assert (len(set(result.state_bytes)) == 1) == (method != "ties-store-all")


def test_zero_shot_is_theta0_under_the_growing_head(small_prepared):
    result = run(dataclasses.replace(small_config(), method="zero-shot"), small_prepared, progress=False)
    forward = forward_fn(small_prepared.backbone.top, small_prepared.theta0, tangent=False)
    for t in range(3):
        accuracy, _ = evaluate(small_prepared, forward, small_prepared.theta0, t)
        assert result.acc_matrix[t, : t + 1].tolist() == accuracy


def test_evaluation_counts_correct_predictions_by_hand(small_prepared):
    """evaluate() against an independent count: per-example logits over all seen classes, argmax, compare."""
    prep = small_prepared
    forward = forward_fn(prep.backbone.top, prep.theta0, tangent=False)
    accuracy, joint = evaluate(prep, forward, prep.theta0, 2)
    classes = [c for task in prep.stream.tasks for c in task.classes]
    head = torch.cat(prep.heads)
    counts = []
    for features, task in zip(prep.test_features, prep.stream.tasks, strict=True):
        with torch.no_grad():
            z = torch.nn.functional.normalize(forward(prep.theta0, features), dim=-1)
        predicted = [classes[int(i)] for i in (z @ head.T).argmax(1)]
        counts.append(sum(p == int(y) for p, y in zip(predicted, task.test_labels, strict=True)))
    assert accuracy == pytest.approx([c / 20 for c in counts])
    assert joint == pytest.approx(sum(counts) / 60)


def test_holistic_first_task_is_kept_whole_and_stages_change_results(small_prepared):
    config = small_config()
    full = run(config, small_prepared, progress=False)
    no_post = run(dataclasses.replace(config, post=False), small_prepared, progress=False)
    no_pre = run(dataclasses.replace(config, pre=False), small_prepared, progress=False)
    no_during = run(dataclasses.replace(config, during=False), small_prepared, progress=False)
    assert full.acc_matrix[0, 0] == no_post.acc_matrix[0, 0]  # no merge and no alignment after task 1
    assert full.state_bytes[0] == 2 * no_during.state_bytes[0] - 4 * 1280  # θ̄ and F̄ vs θ̄ (F̄ has no bias)
    assert not np.array_equal(full.losses[1], no_pre.losses[1])  # tangent vs standard fine-tuning differ


def test_same_seed_same_accuracy_matrix(small_prepared):
    config = small_config()
    first = run(config, small_prepared, progress=False)
    second = run(config, small_prepared, progress=False)
    np.testing.assert_array_equal(first.acc_matrix, second.acc_matrix)


def test_compare_rows_include_the_holistic_ablations():
    labels = [c.label for c in compare_configs(RunConfig(), DEFAULT_METHODS)]
    assert {"holistic", "holistic −pre", "holistic −during", "holistic −post", "joint"} <= set(labels)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(method="magic"), "holistic"),
        (dict(stream="split-cifar"), "split-mnist"),
        (dict(preset="huge"), "quick"),
        (dict(alpha=0.0), "alpha"),
        (dict(lr=-1.0), "lr"),
        (dict(variant="exact"), "faithful"),
        (dict(align_parameter="weights"), "bias"),
        (dict(alpha="0.5"), "alpha must be float"),
        (dict(tasks=2.5), "tasks must be int"),
        (dict(pre="yes"), "pre must be bool"),
        (dict(seed=True), "seed must be int"),
        (dict(steps=0), "steps must be positive"),
        (dict(weight_decay=-0.1), "weight_decay must not be negative"),
    ],
)
def test_bad_config_is_a_user_error(overrides, message):
    with pytest.raises(UserError, match=message):
        RunConfig(**overrides).resolve()


def test_presets_fill_only_unset_fields():
    config = RunConfig(preset="paper", backbone="clip-vit-b-16", lr=3e-4).resolve()
    assert (
        config.lr == 3e-4
        and config.weight_decay == 0.1
        and config.seed == 5
        and math.isclose(config.alpha, 0.4)
    )


def test_merge_defaults_are_stated_once_in_merge_settings():
    """A run and a direct merge agree on every default they share (alpha was 0.5 in one and 0.4 in the other)."""
    config = RunConfig().resolve()
    shared = ("alpha", "scale", "top_k", "ties_scale", "magmax_scale", "opcm_alpha")
    defaults = {f.name: f.default for f in dataclasses.fields(MergeSettings)}
    assert {name: getattr(config, name) for name in shared} == {name: defaults[name] for name in shared}


def test_evaluation_batches_are_no_larger_than_a_fine_tuning_batch():
    """A long run's peak memory must not grow with T: the joint test set of the seen tasks is evaluated in batches
    no larger than the presets' fine-tuning batch (benchmarks/RESULTS.md §4 measures the peak itself)."""
    prep = prepare(small_config(test_per_task=60), progress=False)
    model = forward_fn(prep.backbone.top, prep.theta0, tangent=True)
    sizes = []

    def forward(params, x):
        sizes.append(len(x))
        return model(params, x)

    evaluate(prep, forward, prep.theta0, 2)
    assert sum(sizes) == 180 and max(sizes) <= min(p["batch_size"] for p in PRESETS.values())
