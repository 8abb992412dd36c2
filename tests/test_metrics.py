"""Metrics on hand-made accuracy matrices, against Avalanche's own metric classes."""

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import small_config

from holomerge_lab.experiment.metrics import (
    backward_transfer,
    final_accuracy,
    forgetting,
    forgetting_since_learned,
    pooled_accuracy,
    state_bytes,
)
from holomerge_lab.experiment.pipeline import run
from holomerge_lab.tour.viz import METRIC_DEFINITIONS, results_table

NAN = float("nan")
R = np.array(
    [
        [0.9, NAN, NAN],
        [0.7, 0.8, NAN],
        [0.6, 0.85, 0.95],
    ]
)


def test_final_accuracy():
    assert final_accuracy(R) == pytest.approx((0.6 + 0.85 + 0.95) / 3)


def test_backward_transfer():
    assert backward_transfer(R) == pytest.approx(((0.6 - 0.9) + (0.85 - 0.8)) / 2)


def test_forgetting_uses_the_best_earlier_accuracy():
    # task 0: best 0.9, final 0.6 -> 0.3; task 1: best 0.8, final 0.85 -> -0.05
    assert forgetting(R) == pytest.approx((0.3 - 0.05) / 2)


def test_one_task_has_no_forgetting():
    one = np.array([[0.5]])
    assert backward_transfer(one) == 0.0 and forgetting(one) == 0.0 and final_accuracy(one) == 0.5


def test_state_bytes_counts_every_carried_tensor():
    merged = {"a": torch.zeros(10), "b": torch.zeros(2, 3, dtype=torch.float64)}
    weight = {"a": torch.zeros(10)}
    assert state_bytes(merged) == 10 * 4 + 6 * 8
    assert state_bytes(merged, weight, None) == 10 * 4 + 6 * 8 + 10 * 4


# Avalanche's metric classes, the reference. `import avalanche` runs the whole framework's __init__ (training
# loops, loggers, wandb); the metric modules themselves need only torch, numpy and matplotlib, so they are loaded
# under bare parent packages that skip those __init__ files.
@functools.cache
def _avalanche_metrics():
    import importlib
    import importlib.util
    import sys
    import types

    root = Path(importlib.util.find_spec("avalanche").submodule_search_locations[0])
    for name in ("avalanche", "avalanche.evaluation", "avalanche.evaluation.metrics"):
        package = types.ModuleType(name)
        package.__path__ = [str(root.joinpath(*name.split(".")[1:]))]
        sys.modules[name] = package
    evaluation, metrics_package = (
        sys.modules["avalanche.evaluation"],
        sys.modules["avalanche.evaluation.metrics"],
    )
    definitions = importlib.import_module("avalanche.evaluation.metric_definitions")
    evaluation.Metric, evaluation.GenericPluginMetric = definitions.Metric, definitions.GenericPluginMetric
    accuracy = importlib.import_module("avalanche.evaluation.metrics.accuracy")
    metrics_package.TaskAwareAccuracy, metrics_package.Mean = accuracy.TaskAwareAccuracy, accuracy.Mean
    return accuracy, importlib.import_module("avalanche.evaluation.metrics.forgetting_bwt")


def _avalanche_stream_forgetting(matrix: np.ndarray, forgetting_class) -> float:
    """Avalanche's stream forgetting after the last task, fed as its plugin feeds it: task j's value right after
    training on j is `initial`, its value after the last task is `last`; the stream value is their mean."""
    last = len(matrix) - 1
    metric = forgetting_class()
    for j in range(last + 1):
        metric.update(j, float(matrix[j, j]), initial=True)
        if j < last:  # the task just trained has no `last` value yet: Avalanche leaves it out
            metric.update(j, float(matrix[last, j]))
    values = metric.result()
    return float(np.mean(list(values.values()))) if values else 0.0


MATRICES = [
    R,
    np.array([[0.5]]),
    np.array([[0.2, NAN, NAN, NAN], [0.9, 0.4, NAN, NAN], [0.1, 0.95, 0.7, NAN], [0.3, 0.2, 0.75, 0.6]]),
]


@pytest.mark.parametrize("matrix", MATRICES)
def test_forgetting_since_learned_and_bwt_match_avalanche(matrix):
    _, reference = _avalanche_metrics()
    assert forgetting_since_learned(matrix) == pytest.approx(
        _avalanche_stream_forgetting(matrix, reference.Forgetting), abs=1e-12
    )
    assert backward_transfer(matrix) == pytest.approx(
        _avalanche_stream_forgetting(matrix, reference.BWT), abs=1e-12
    )


def test_the_two_forgettings_differ_where_an_old_task_improved_before_it_dropped():
    matrix = MATRICES[2]  # task 0: learned at 0.2, best 0.9 later, final 0.3
    assert forgetting(matrix) > forgetting_since_learned(matrix) + 0.1


def test_pooled_and_task_mean_accuracy_match_avalanche_on_unequal_task_sizes():
    accuracy, _ = _avalanche_metrics()
    generator = torch.Generator().manual_seed(0)
    sizes, hit_rates = [7, 30, 3], [0.9, 0.3, 0.6]  # unequal sizes: the two conventions differ
    pooled, per_task = accuracy.Accuracy(), accuracy.TaskAwareAccuracy()
    ours = []
    for task, (size, rate) in enumerate(zip(sizes, hit_rates, strict=True)):
        labels = torch.randint(0, 5, (size,), generator=generator)
        right = torch.rand(size, generator=generator) < rate
        predictions = torch.where(right, labels, (labels + 1) % 5)
        pooled.update(predictions, labels)
        per_task.update(predictions, labels, task)
        ours.append(float((predictions == labels).float().mean()))
    row = np.array([ours])
    assert pooled_accuracy(ours, sizes) == pytest.approx(pooled.result(), abs=1e-7)
    assert final_accuracy(row) == pytest.approx(np.mean(list(per_task.result().values())), abs=1e-7)
    assert abs(pooled_accuracy(ours, sizes) - final_accuracy(row)) > 0.05


def test_run_result_reports_both_accuracies_and_both_forgettings(small_prepared):
    result = run(small_config(method="average"), small_prepared, progress=False)
    document = result.to_json()
    sizes = [len(t.test_labels) for t in small_prepared.stream.tasks]
    assert document["acc"] == document["acc_task_mean"] == final_accuracy(result.acc_matrix)
    assert document["acc_pooled"] == pytest.approx(pooled_accuracy(result.acc_matrix[-1], sizes), abs=1e-6)
    assert document["forgetting"] == forgetting(result.acc_matrix)
    assert document["forgetting_since_learned"] == forgetting_since_learned(result.acc_matrix)
    row = results_table([result])[0]
    assert row["ACC (task mean)"] == round(document["acc_task_mean"], 4)
    assert row["ACC (pooled)"] == round(document["acc_pooled"], 4)
    assert row["forgetting (since learned)"] == round(document["forgetting_since_learned"], 4)
    assert set(row) - {"method", "bytes carried", "Θ(1)?", "seconds"} == set(METRIC_DEFINITIONS)
