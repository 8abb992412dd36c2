"""Cached reruns: a rerun reuses exactly the fine-tuned tasks whose inputs are unchanged, with the uncached result."""

import dataclasses

import numpy as np
import torch
from conftest import small_config

from holomerge_lab.pipeline import run
from holomerge_lab.task_cache import task_key


def entries(folder) -> int:
    return len(list(folder.glob("*.pt")))


def test_reruns_reuse_the_fine_tunes_they_can_and_match_uncached_runs(small_prepared, tmp_path):
    config = small_config()  # 3 tasks, holistic with every stage
    toggles = [
        ({}, 3),  # first run: 3 fine-tunes stored
        ({}, 3),  # the same again: all 3 reused
        ({"post": False}, 4),  # tasks 1-2 start from θ0 and the unaligned task-1 model: reused; task 3 new
        ({"during": False}, 5),  # likewise: only task 3's start (a different merge) is new
        ({"pre": False}, 8),  # standard instead of tangent fine-tuning: nothing reusable
    ]
    for change, stored in toggles:
        changed = dataclasses.replace(config, **change)
        cached = run(changed, small_prepared, progress=False, task_cache=tmp_path)
        assert entries(tmp_path) == stored, change
        fresh = run(changed, small_prepared, progress=False)
        np.testing.assert_array_equal(cached.acc_matrix, fresh.acc_matrix)
        assert cached.losses == fresh.losses


def test_a_damaged_entry_is_trained_again(small_prepared, tmp_path):
    config = small_config()
    first = run(config, small_prepared, progress=False, task_cache=tmp_path)
    for path in tmp_path.glob("*.pt"):
        path.write_bytes(b"not a model")
    again = run(config, small_prepared, progress=False, task_cache=tmp_path)
    np.testing.assert_array_equal(first.acc_matrix, again.acc_matrix)
    assert entries(tmp_path) == len(small_prepared.stream.tasks)


def test_the_key_follows_tensor_bytes_not_identity():
    inputs = {"start": {"w": torch.arange(6.0).reshape(2, 3)}, "seed": 1, "settings": {"lr": 1e-3}}
    same = {"start": {"w": torch.arange(6.0).reshape(2, 3).clone()}, "settings": {"lr": 1e-3}, "seed": 1}
    assert task_key(inputs) == task_key(same)
    nudged = inputs["start"]["w"].clone()
    nudged[1, 2] = torch.nextafter(nudged[1, 2], torch.tensor(10.0))  # one ulp
    assert task_key({**inputs, "start": {"w": nudged}}) != task_key(inputs)
    assert task_key({**inputs, "start": {"w": inputs["start"]["w"].reshape(3, 2)}}) != task_key(inputs)
    assert task_key({**inputs, "settings": {"lr": 2e-3}}) != task_key(inputs)
