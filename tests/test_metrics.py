"""Metrics on hand-made accuracy matrices."""

import numpy as np
import pytest
import torch

from holomerge_lab.metrics import backward_transfer, final_accuracy, forgetting, state_bytes

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
