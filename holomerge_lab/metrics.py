"""Continual-learning metrics on an accuracy matrix R, where R[i][j] is the accuracy on task j after task i.

Entries with j > i (tasks not yet seen) are NaN and never enter a metric.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from torch import Tensor


def final_accuracy(acc_matrix: np.ndarray) -> float:
    """ACC: mean accuracy over all tasks after the last one."""
    return float(np.mean(acc_matrix[-1]))


def backward_transfer(acc_matrix: np.ndarray) -> float:
    """BWT: mean over j < T of R[T][j] − R[j][j]; negative means old tasks were forgotten."""
    last = len(acc_matrix) - 1
    if last == 0:
        return 0.0
    return float(np.mean([acc_matrix[last, j] - acc_matrix[j, j] for j in range(last)]))


def forgetting(acc_matrix: np.ndarray) -> float:
    """Mean over j < T of the largest drop from any earlier row: max_{i<T} R[i][j] − R[T][j]."""
    last = len(acc_matrix) - 1
    if last == 0:
        return 0.0
    drops = [np.max(acc_matrix[j:last, j]) - acc_matrix[last, j] for j in range(last)]
    return float(np.mean(drops))


def state_bytes(*states: Mapping[str, Tensor] | None) -> int:
    """Bytes of the tensors carried from one task to the next (θ0, which every method keeps, is not counted)."""
    return sum(t.numel() * t.element_size() for s in states if s for t in s.values())
