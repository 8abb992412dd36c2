"""Checkpoints of a continual run: the carried state after every task, written so that nothing is ever half-saved.

A kernel that dies on task 14 of 20 should cost one task, not fourteen. After each task the run writes
`task-NNN.pt` (tensors and plain values only, so it loads with `weights_only=True`): the merge rule's carried state,
the accuracy matrix so far, the config, the backbone and the package versions. Files are written to a temporary
name and renamed (atomic on POSIX), and the previous task's file is kept until the next one is safe, so a damaged
newest file still leaves a good one behind.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .. import __version__
from ..errors import UserError
from ..files import atomic_write

FORMAT = 1
KEEP = 2  # the newest checkpoints kept on disk


def versions() -> dict[str, str]:
    return {"holomerge_lab": __version__, "torch": torch.__version__.split("+")[0], "format": str(FORMAT)}


def checkpoint_path(directory: Path, task: int) -> Path:
    return Path(directory) / f"task-{task + 1:03d}.pt"


def atomic_save(path: Path, state: dict) -> Path:
    """torch.save, atomically (see `files.atomic_write`)."""
    return atomic_write(path, lambda f: torch.save(state, f))


def save_checkpoint(directory: Path, task: int, state: dict) -> Path:
    """Write the state after `task` (0-based) atomically, then drop checkpoints older than the last KEEP."""
    directory = Path(directory)
    path = atomic_save(checkpoint_path(directory, task), {**state, "task": task, "versions": versions()})
    for old in sorted(directory.glob("task-*.pt"))[:-KEEP]:
        old.unlink()
    return path


def load_checkpoint(path: Path) -> dict:
    """Load one checkpoint, refusing a damaged file with a message that says what to do."""
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:  # truncated, corrupted, or not a checkpoint at all
        raise UserError(
            f"checkpoint {path} is damaged or not a holomerge_lab checkpoint ({type(e).__name__}); delete it to "
            "resume from the one before it, or start the run again without --resume"
        ) from None
    if not isinstance(state, dict) or "task" not in state or "config" not in state:
        raise UserError(
            f"{path} is not a holomerge_lab checkpoint (no task/config); delete it or pick another folder"
        )
    return state


def check_compatible(state: dict, config: dict, path: Path) -> None:
    """Refuse a checkpoint written by another run: name every setting and version that differs."""
    differences = [
        f"{key}: checkpoint {state['config'].get(key)!r}, now {value!r}"
        for key, value in config.items()
        if state["config"].get(key) != value
    ]
    differences += [
        f"{key} version: checkpoint {state['versions'].get(key)!r}, now {value!r}"
        for key, value in versions().items()
        if state.get("versions", {}).get(key) != value
    ]
    if differences:
        raise UserError(
            f"checkpoint {path} belongs to a different run ({'; '.join(differences)}); resume with the same "
            "settings, or use another output folder"
        )


PARAMETER_DICTS = ("merged", "weight", "finetuned", "task_vector")  # carried entries shaped like θ0


def check_content(state: dict, theta0: dict, n_tasks: int, path: Path) -> None:
    """What a checkpoint holds is what a run of these settings saves after its task: a task index inside the
    stream, an n × n accuracy matrix, one pooled accuracy and one byte count per task done, and carried parameters
    with θ0's names and shapes, all finite. A file that only loads and names the right settings is not enough:
    merged parameters of another shape would resume to a number that looks like a result."""
    problems = []
    task = state.get("task")
    if not isinstance(task, int) or not 0 <= task < n_tasks:
        problems.append(f"task index {task!r} outside a {n_tasks}-task stream")
    else:
        matrix = state.get("acc_matrix")
        if not isinstance(matrix, torch.Tensor) or tuple(matrix.shape) != (n_tasks, n_tasks):
            problems.append(
                f"an accuracy matrix of shape {getattr(matrix, 'shape', None)}, not {n_tasks} × {n_tasks}"
            )
        for key in ("joint_accuracy", "state_bytes"):
            if len(state.get(key) or ()) != task + 1:
                problems.append(f"{len(state.get(key) or ())} entries of {key} after task {task + 1}")
    for entry in PARAMETER_DICTS:
        params = (state.get("carried") or {}).get(entry)
        if params is None:
            continue
        for name, value in params.items():
            if name not in theta0 or value.shape != theta0[name].shape:
                problems.append(f"carried {entry} {name!r} of shape {tuple(value.shape)}, not θ0's")
            elif not bool(torch.isfinite(value).all()):
                problems.append(f"carried {entry} {name!r} holds NaN or infinity")
    if problems:
        raise UserError(f"checkpoint {path} does not hold what this run saves ({'; '.join(problems[:3])}): delete "
                        "it to resume from the one before it, or start the run again without --resume")  # fmt: skip


def latest_checkpoint(
    directory: Path, config: dict, theta0: dict | None = None, n_tasks: int | None = None
) -> tuple[dict | None, list[str]]:
    """The newest checkpoint in `directory` that loads and matches `config` (None if there is none), and a
    message for every newer file that had to be skipped because it was damaged. Given θ0 and the number of
    tasks, its content is checked too (`check_content`)."""
    skipped = []
    for path in sorted(Path(directory).glob("task-*.pt"), reverse=True):
        try:
            state = load_checkpoint(path)
        except UserError as e:
            skipped.append(str(e))
            continue
        check_compatible(state, config, path)
        if theta0 is not None and n_tasks is not None:
            check_content(state, theta0, n_tasks, path)
        return state, skipped
    return None, skipped
