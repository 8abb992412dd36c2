"""Tasks: the types of a continual-learning stream and the helpers every stream is cut with.

``Task`` and ``TaskStream`` are what a stream builder returns. The helpers here cut any ``Source`` into tasks:
class-incremental (CIL, ``_cil_stream``: each task brings new classes) and domain-incremental (DIL, ``_dil_stream``:
every task has all classes, seen through a transformation such as ``rotate`` or ``pixel_permutation``), with seeded
stratified samples (``stratified_order``, ``_rng``) so that the same arguments give the same tensors. They live apart
from the registered streams so that both the embedded streams (streams.py) and the file streams of the CLIP
benchmarks (folder_streams.py) build on them without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import SettingError, UserError
from .sources import Source

MAX_DOMAINS = 1000
"""Upper bound on the number of DIL domains: far beyond the 100+ tasks of the long-horizon experiments."""
DIL_DEFAULT_TASKS = 5


@dataclass(frozen=True, eq=False)
class Task:
    """One task of a stream: its training and test data; labels are global class ids of the stream."""

    name: str  # "classes 2,3" / "rotation 36°" / "permutation 3"
    classes: tuple[int, ...]  # CIL: the task's new classes; DIL: all labels
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    train_sizes: torch.Tensor | None = None  # [N, 2] each training image file's (height, width)


@dataclass(frozen=True, eq=False)
class TaskStream:
    """A sequence of tasks and the names of every class it uses (indexed by global label id)."""

    name: str
    setting: str  # "cil" or "dil"
    class_names: tuple[str, ...]
    tasks: tuple[Task, ...]
    seed: int
    split: str = ""  # where the train/test split comes from (official lists, folders, a seeded split)


def _rng(seed: int, *tags: int) -> np.random.Generator:
    """An independent generator per (seed, purpose, task), so changing one task never shifts another."""
    return np.random.default_rng([seed, *tags])


def stratified_order(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A seeded ordering of ``range(len(labels))`` in which every contiguous block keeps the class shares.

    A prefix is then a stratified subsample, and consecutive blocks are disjoint stratified samples."""
    keys = np.empty(len(labels))
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        keys[idx] = (rng.permutation(len(idx)) + rng.random(len(idx))) / len(idx)
    return np.argsort(keys, kind="stable")


def _check_count(kind: str, n: int | None, maximum: int) -> int | None:
    """``n`` if 1 <= n <= maximum (None passes through, meaning "all"), else a UserError naming the range."""
    if n is None:
        return None
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or not 1 <= n <= maximum:
        raise SettingError(kind, f"is {n!r}, out of range; choose 1..{maximum} (the maximum available)")
    return int(n)


def _check_order(order: Sequence[int] | None, n: int, what: str) -> list[int]:
    if order is None:
        return list(range(n))
    order = [int(o) for o in order]
    if sorted(order) != list(range(n)):
        raise UserError(f"order={order} must be a permutation of the {n} {what} 0..{n - 1}")
    return order


def _pick(images: torch.Tensor, labels: torch.Tensor, idx: np.ndarray):
    idx = torch.from_numpy(np.sort(idx))
    return images[idx], labels[idx]


def _sizes(source: Source, idx: np.ndarray) -> torch.Tensor | None:
    """The file sizes of the training images `_pick` takes at `idx` (same order), if the source has them."""
    return None if source.train_sizes is None else source.train_sizes[torch.from_numpy(np.sort(idx))]


def _cil_stream(
    name: str, source: Source, n_tasks, train_per_task, test_per_task, order, seed, group: int = 2,
    splits: int | None = None,
) -> TaskStream:  # fmt: skip
    """Class-incremental: the classes, in ``order``, cut into groups of ``group``; task t sees group t only.

    With ``splits``: the classes cut into that many groups at ``floor(n_classes·t/splits)``, as the authors'
    ``get_class_incremental_classes_and_subset_indices`` does (sizes differ by one where it does not divide)."""
    n_classes = len(source.class_names)
    order = _check_order(order, n_classes, "class ids")
    if splits is None:
        n_tasks = _check_count("n_tasks", n_tasks, n_classes // group) or n_classes // group
        groups = [order[t * group : (t + 1) * group] for t in range(n_tasks)]
    else:
        groups = [order[n_classes * t // splits : n_classes * (t + 1) // splits] for t in range(splits)]
        n_tasks = splits
    y_tr, y_te = source.train_labels.numpy(), source.test_labels.numpy()
    pools = [(np.flatnonzero(np.isin(y_tr, g)), np.flatnonzero(np.isin(y_te, g))) for g in groups]
    n_tr = _check_count("train_per_task", train_per_task, min(len(p[0]) for p in pools))
    n_te = _check_count("test_per_task", test_per_task, min(len(p[1]) for p in pools))
    tasks = []
    for t, (g, (pool_tr, pool_te)) in enumerate(zip(groups, pools, strict=True)):
        tr = pool_tr[stratified_order(y_tr[pool_tr], _rng(seed, 0, t))[:n_tr]]
        te = pool_te[stratified_order(y_te[pool_te], _rng(seed, 1, t))[:n_te]]
        tasks.append(
            Task(
                f"classes {','.join(map(str, g))}",
                tuple(g),
                *_pick(source.train_images, source.train_labels, tr),
                *_pick(source.test_images, source.test_labels, te),
                _sizes(source, tr),
            )
        )
    return TaskStream(name, "cil", source.class_names, tuple(tasks), seed, source.split)


def _domain_samples(labels: np.ndarray, n: int | None, n_domains: int, seed: int, tag: int):
    """Each domain's sample (a function of the domain): disjoint blocks of one stratified order when they fit,
    else a fresh seeded sample per domain. ``n=None`` is an equal disjoint share: all data, none reused."""
    n = len(labels) // n_domains if n is None else n
    if n * n_domains <= len(labels):
        shared = stratified_order(labels, _rng(seed, tag))
        return lambda d: shared[d * n : (d + 1) * n]
    return lambda d: stratified_order(labels, _rng(seed, tag, d))[:n]


def _dil_stream(
    name: str,
    source: Source,
    n_tasks,
    train_per_task,
    test_per_task,
    order,
    seed,
    transform: Callable[[torch.Tensor, int, int], torch.Tensor],
    task_name: Callable[[int, int], str],
) -> TaskStream:
    """Domain-incremental: domain d applies ``transform(images, d, n_domains)`` to its own data sample."""
    n_tasks = _check_count("n_tasks", n_tasks, MAX_DOMAINS) or DIL_DEFAULT_TASKS
    order = _check_order(order, n_tasks, "domain ids")
    y_tr, y_te = source.train_labels.numpy(), source.test_labels.numpy()
    train_of = _domain_samples(
        y_tr, _check_count("train_per_task", train_per_task, len(y_tr)), n_tasks, seed, 0
    )
    test_of = _domain_samples(y_te, _check_count("test_per_task", test_per_task, len(y_te)), n_tasks, seed, 1)
    classes = tuple(range(len(source.class_names)))
    tasks = []
    for d in order:
        x_tr, l_tr = _pick(source.train_images, source.train_labels, train_of(d))
        x_te, l_te = _pick(source.test_images, source.test_labels, test_of(d))
        x_tr, x_te = transform(x_tr, d, n_tasks), transform(x_te, d, n_tasks)
        tasks.append(Task(task_name(d, n_tasks), classes, x_tr, l_tr, x_te, l_te))
    return TaskStream(name, "dil", source.class_names, tuple(tasks), seed)


def rotation_angle(domain: int, n_domains: int) -> float:
    """Domain d of T is rotated by d·180/T degrees: evenly spread over a half turn, domain 0 upright.

    A half turn keeps the shift growing along the stream: the last domain is the farthest from the first
    (over a full turn the last domains would come back close to upright)."""
    return domain * 180.0 / n_domains


def rotate(images: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate a uint8 batch [N,H,W] counter-clockwise about the centre (bilinear, zero fill), still uint8.

    One sampling grid serves the whole batch, which keeps 100+ rotated domains cheap."""
    if degrees == 0:
        return images.clone()
    n, h, w = images.shape
    rad = torch.tensor(degrees * torch.pi / 180.0, dtype=torch.float64)
    cos, sin = torch.cos(rad).item(), torch.sin(rad).item()
    # affine_grid maps output to input coordinates in [-1, 1]; the aspect terms keep non-square images round.
    theta = torch.tensor([[cos, -sin * h / w, 0.0], [sin * w / h, cos, 0.0]], dtype=torch.float32)
    grid = torch.nn.functional.affine_grid(theta[None], [1, 1, h, w], align_corners=False)
    out = torch.nn.functional.grid_sample(
        images[:, None].float(), grid.expand(n, h, w, 2), mode="bilinear", align_corners=False
    )
    return out[:, 0].round_().clamp_(0, 255).to(torch.uint8)


def pixel_permutation(domain: int, n_pixels: int, seed: int) -> torch.Tensor:
    """Domain 0 is the identity; domain d > 0 a fixed seeded shuffle of the pixels."""
    if domain == 0:
        return torch.arange(n_pixels)
    return torch.from_numpy(_rng(seed, 2, domain).permutation(n_pixels))


def _fmt_angle(a: float) -> str:
    return f"{a:.1f}".rstrip("0").rstrip(".")


def _combine(sources: Sequence[Source], prefixes: Sequence[str]) -> Source:
    """Sources with same-shape images as one: each source's labels come after the ones before it."""
    shifts = np.cumsum([0, *(len(s.class_names) for s in sources[:-1])])
    return Source(
        "+".join(s.name for s in sources),
        torch.cat([s.train_images for s in sources]),
        torch.cat([s.train_labels + int(k) for s, k in zip(sources, shifts, strict=True)]),
        torch.cat([s.test_images for s in sources]),
        torch.cat([s.test_labels + int(k) for s, k in zip(sources, shifts, strict=True)]),
        tuple(f"{p} {c}" for s, p in zip(sources, prefixes, strict=True) for c in s.class_names),
    )


def confusion_groups(confusion: np.ndarray, group: int) -> list[int]:
    """A class order that puts the classes a classifier confuses most into the same task, greedily: the most
    confused pair of classes still free starts a group, then the free class most confused with the group's
    members joins it, until it has ``group`` classes.

    ``confusion[i][j]`` counts class-i examples predicted as j. A frozen head's errors *across* tasks cannot be
    fixed by fine-tuning on one task; errors *inside* a task can, so this order gives fine-tuning room to show."""
    c = np.asarray(confusion, dtype=float)
    n = len(c)
    if c.shape != (n, n) or n % group:
        raise UserError(f"need a square confusion matrix whose size is a multiple of {group}, got {c.shape}")
    mutual = c + c.T
    free, order = set(range(n)), []
    while free:
        ids = sorted(free)
        pairs = [(i, j) for i in ids for j in ids if i < j]
        members = list(max(pairs, key=lambda p: mutual[p])) if group > 1 else ids[:1]
        while len(members) < group:
            rest = [k for k in ids if k not in members]
            members.append(max(rest, key=lambda k: mutual[members, k].sum()))
        order += sorted(members)
        free -= set(members)
    return order
