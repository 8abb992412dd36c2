"""Continual-learning metrics on an accuracy matrix R, where R[i][j] is the accuracy on task j after task i.

Entries with j > i (tasks not yet seen) are NaN and never enter a metric. T is the last row (0-based).
Two conventions exist for each headline number, and the package reports both under names that say which:

- accuracy, mean over tasks (`acc_task_mean`, also `acc`): (1/(T+1)) Σ_j R[T][j], every task weighs the same;
- accuracy, pooled (`acc_pooled`): Σ_j n_j R[T][j] / Σ_j n_j with n_j task j's test-set size: the fraction of
  all seen test images classified right (the authors' and Avalanche's `Accuracy`). The two agree when every task
  has as many test images (split CIFAR-100) and differ where sizes differ (ImageNet-R, DomainNet, Office);
- forgetting, max-based (`forgetting`, Chaudhry et al. 2018): mean_{j<T} max_{i<T} R[i][j] − R[T][j];
- forgetting since learned (`forgetting_since_learned`, Avalanche's `StreamForgetting`): mean_{j<T} R[j][j] −
  R[T][j], the drop from right after task j was learned; it equals −BWT.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from torch import Tensor


def final_accuracy(acc_matrix: np.ndarray) -> float:
    """ACC, mean over tasks: mean accuracy over all tasks after the last one, each task weighted equally."""
    return float(np.mean(acc_matrix[-1]))


def pooled_accuracy(accuracies: Sequence[float], sizes: Sequence[int]) -> float:
    """ACC, pooled: per-task accuracies weighted by their test-set sizes (= accuracy on the union of the sets)."""
    if len(accuracies) != len(sizes) or sum(sizes) == 0:
        raise ValueError(
            f"need one positive size per task, got {len(accuracies)} accuracies and sizes {sizes}"
        )
    return float(np.dot(accuracies, sizes) / np.sum(sizes))


def backward_transfer(acc_matrix: np.ndarray) -> float:
    """BWT: mean over j < T of R[T][j] − R[j][j]; negative means old tasks were forgotten."""
    last = len(acc_matrix) - 1
    if last == 0:
        return 0.0
    return float(np.mean([acc_matrix[last, j] - acc_matrix[j, j] for j in range(last)]))


def forgetting(acc_matrix: np.ndarray) -> float:
    """Forgetting, max-based (Chaudhry et al. 2018): mean over j < T of max_{i<T} R[i][j] − R[T][j]."""
    last = len(acc_matrix) - 1
    if last == 0:
        return 0.0
    drops = [np.max(acc_matrix[j:last, j]) - acc_matrix[last, j] for j in range(last)]
    return float(np.mean(drops))


def forgetting_since_learned(acc_matrix: np.ndarray) -> float:
    """Forgetting since learned (Avalanche's): mean over j < T of R[j][j] − R[T][j]."""
    last = len(acc_matrix) - 1
    if last == 0:
        return 0.0
    return float(np.mean([acc_matrix[j, j] - acc_matrix[last, j] for j in range(last)]))


def state_bytes(*states: Mapping[str, Tensor] | None) -> int:
    """Bytes of the tensors carried from one task to the next (θ0, which every method keeps, is not counted)."""
    return sum(t.numel() * t.element_size() for s in states if s for t in s.values())
