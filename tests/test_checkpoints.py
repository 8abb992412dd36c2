"""Checkpoints: atomic, loadable with weights_only, damaged files refused, other runs' files refused."""

import stat

import pytest
import torch

from holomerge_lab import files
from holomerge_lab.errors import UserError
from holomerge_lab.experiment.checkpoints import (
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)

CONFIG = {"stream": "split-digits", "method": "holistic", "seed": 0, "alpha": 0.5}


def state(task: int) -> dict:
    return {
        "config": CONFIG,
        "carried": {"merged": {"w": torch.full((3,), float(task))}, "weight": {"w": torch.ones(3)}},
        "acc_matrix": torch.eye(3),
        "joint_accuracy": [0.5] * (task + 1),
    }


def test_round_trip_with_weights_only(tmp_path):
    save_checkpoint(tmp_path, 0, state(0))
    loaded = load_checkpoint(checkpoint_path(tmp_path, 0))
    assert loaded["task"] == 0 and loaded["config"] == CONFIG
    assert torch.equal(loaded["carried"]["merged"]["w"], torch.zeros(3))
    assert not list(tmp_path.glob("*.tmp"))


def test_keeps_only_the_newest_two(tmp_path):
    for task in range(4):
        save_checkpoint(tmp_path, task, state(task))
    assert sorted(p.name for p in tmp_path.glob("task-*.pt")) == ["task-003.pt", "task-004.pt"]
    found, skipped = latest_checkpoint(tmp_path, CONFIG)
    assert found["task"] == 3 and skipped == []


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_a_damaged_newest_file_is_refused_and_the_previous_one_loads(tmp_path, damage):
    save_checkpoint(tmp_path, 0, state(0))
    newest = save_checkpoint(tmp_path, 1, state(1))
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"not a checkpoint")
    with pytest.raises(UserError, match="damaged"):
        load_checkpoint(newest)
    found, skipped = latest_checkpoint(tmp_path, CONFIG)
    assert found["task"] == 0 and len(skipped) == 1 and "task-002.pt" in skipped[0]


def test_a_checkpoint_of_another_run_is_refused_naming_the_differences(tmp_path):
    save_checkpoint(tmp_path, 0, state(0))
    with pytest.raises(UserError, match=r"stream: checkpoint 'split-digits', now 'split-mnist'"):
        latest_checkpoint(tmp_path, {**CONFIG, "stream": "split-mnist"})


def test_an_empty_folder_has_no_checkpoint(tmp_path):
    assert latest_checkpoint(tmp_path, CONFIG) == (None, [])


def test_files_are_written_with_the_permissions_open_would_give(tmp_path):
    """The temporary file behind an atomic write is owner-only; the file a user finds must not be."""
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    written = files.atomic_write_text(tmp_path / "atomic.txt", "x")
    assert stat.S_IMODE(written.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
