"""Cached reruns: a rerun reuses exactly the fine-tuned tasks whose inputs are unchanged, with the uncached result."""

import dataclasses

import numpy as np
import torch
from conftest import small_config

from holomerge_lab.experiment.pipeline import compare, run
from holomerge_lab.experiment.task_cache import task_key


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


def test_compare_over_seeds_trains_each_distinct_task_once_and_matches_uncached_rows(tmp_path):
    config = small_config(tasks=2)
    methods = ("average", "task-arithmetic", "individual")  # all fine-tune every task from θ0, standard
    cached = compare(config, methods, seeds=[0, 1], progress=False, task_cache=tmp_path)
    assert entries(tmp_path) == 2 * 2  # 2 seeds × 2 tasks, not × 3 methods
    assert [r.reused_tasks for r in cached] == [0, 2, 2] * 2  # the 2nd and 3rd rows load every task
    fresh = compare(config, methods, seeds=[0, 1], progress=False)
    assert [(r.label, r.seed) for r in cached] == [(m, s) for s in (0, 1) for m in methods]
    for a, b in zip(cached, fresh, strict=True):
        np.testing.assert_array_equal(a.acc_matrix, b.acc_matrix)
    assert not np.array_equal(cached[0].acc_matrix, cached[3].acc_matrix)  # seeds draw other data


def test_the_key_holds_the_intra_op_thread_count():
    """A model fine-tuned on one thread is not the one two threads train (float sums follow the threads): the
    same inputs under another thread count are another entry."""
    inputs = {"start": {"w": torch.ones(2, 3)}, "settings": {"lr": 1e-3}}
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = task_key(inputs)
        torch.set_num_threads(2)
        two = task_key(inputs)
    finally:
        torch.set_num_threads(threads)
    assert one != two
