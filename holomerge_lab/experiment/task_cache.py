"""A disk cache of fine-tuned task models, so that a rerun which changes only what comes after fine-tuning skips it.

Fine-tuning task t is a pure function of what it sees: the task's training features, labels and frozen head, the
model function (θ0, tangent or standard), the parameters it starts from and the training settings; every random
draw is seeded per task. The key hashes exactly those inputs (tensor bytes, not names) and torch's intra-op thread
count, so a hit is the model the training would have produced, bit for bit. The thread count is in the key because
float sums follow it: standard fine-tuning on one thread ends at another accuracy than on two (benchmarks/RESULTS.md,
*A panel's press*), so a model cached by a one-thread sweep worker is not what a two-thread panel would train. In the holistic method task t starts from the merged model after t−1,
so what a toggle can reuse follows from the start point:

- the same settings again (a rerun, "Run all 8" twice): every task;
- `post`, `during`, α or the alignment settings changed: task 1 (it starts from θ0) and task 2 (the merge of one
  task is that task's model, and alignment starts at task 2); a later task only where its start is unchanged;
- `pre` or a training setting changed, or other data: nothing.

Entries are a few MB each (θ(t) and Adam's v of the trainable top) in `cache_dir()/task-models`; delete the
folder to reclaim the space.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..files import cache_write
from ..method.merging import TaskModel
from .checkpoints import versions


def _update(digest: hashlib._Hash, value: Any) -> None:
    if isinstance(value, Tensor):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"tensor {tensor.dtype} {tuple(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, Mapping):
        digest.update(f"map {len(value)};".encode())
        for k in sorted(value):
            digest.update(f"{k}=".encode())
            _update(digest, value[k])
    elif isinstance(value, list | tuple):
        digest.update(f"seq {len(value)};".encode())
        for v in value:
            _update(digest, v)
    else:  # plain settings: their JSON form, so 1 and 1.0 or None and "None" stay apart
        digest.update(json.dumps(value).encode() + b";")


def task_key(inputs: Mapping[str, Any]) -> str:
    """The SHA-256 of everything that decides one fine-tuning (tensors by their bytes), with the versions and the
    intra-op thread count."""
    digest = hashlib.sha256()
    _update(digest, {**inputs, "versions": versions(), "threads": torch.get_num_threads()})
    return digest.hexdigest()


def cached_task(
    directory: Path,
    key: str,
    train: Callable[[], tuple[TaskModel, list[float]]],
    device: torch.device | str = "cpu",
    like: Mapping[str, torch.Tensor] | None = None,
) -> tuple[TaskModel, list[float], bool]:
    """The fine-tuned model and losses for `key`: loaded (onto `device`) if stored, else trained and stored. Also:
    whether it was a hit. A stored entry is used only if it records `key` and, given `like` (the start point), its
    parameters and v have those names and shapes and are finite; else it is trained again and overwritten."""
    path = Path(directory) / f"{key}.pt"
    if path.exists():
        try:
            state = torch.load(path, weights_only=True, map_location=device)
            model = TaskModel(
                state["params"], state["second_moment"], state["steps"], state["beta2"], state["fisher"]
            )
            if state["key"] == key and _fits(model, like):
                return model, state["losses"], True
        except Exception:  # a damaged entry is only a miss: train again and overwrite it
            pass
        path.unlink(missing_ok=True)
    model, losses = train()
    state = {
        "params": model.params, "second_moment": model.second_moment, "steps": model.steps, "beta2": model.beta2,
        "fisher": model.fisher, "losses": list(losses), "key": key,
    }  # fmt: skip
    cache_write(path, lambda f: torch.save(state, f))
    return model, losses, False


def _fits(model: TaskModel, like: Mapping[str, torch.Tensor] | None) -> bool:
    """The stored model is one of these parameters: θ(t) with `like`'s names and shapes, v and the Fisher on a
    subset of them, every value finite."""
    if like is None:
        return True
    if set(model.params) != set(like):
        return False
    parts = [model.params, model.second_moment, *([model.fisher] if model.fisher is not None else [])]
    return all(
        name in like and value.shape == like[name].shape and bool(torch.isfinite(value).all())
        for part in parts
        for name, value in part.items()
    )
