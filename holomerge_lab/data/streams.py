"""Streams: how a source is cut into the tasks of continual learning.

Class-incremental (CIL): each task brings new classes. Domain-incremental (DIL): every task has all classes,
seen through a different transformation (rotations, pixel permutations) or in a different real domain (the CLIP
benchmarks' folders). Every stream is one builder function registered in ``STREAMS``; all randomness comes from
``seed``: same arguments, same tensors. Where the pixels come from is sources.py and folder_sources.py.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError, check_choice
from .folder_sources import (
    DOMAIN_FOLDERS,
    FOLDER_IMAGE_SIZE,
    FOLDER_LAYOUTS,
    IMAGECLEF_CLASSES,
    cars_source,
    cub_source,
    domain_folders,
    domainnet_lists,
    folder_root,
    imagenet_r_domain,
    load_cifar100,
    numbered,
)
from .sources import Source, load_image_folder, load_source

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
        raise UserError(f"{kind}={n!r} is out of range; choose 1..{maximum} (the maximum available)")
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


def split_mnist(n_tasks=None, train_per_task=None, test_per_task=None, order=None, seed=0) -> TaskStream:
    """CIL, 5 tasks of 2 digits: zero-shot prototype heads win here unless features are centred."""
    return _cil_stream(
        "split-mnist", load_source("mnist"), n_tasks, train_per_task, test_per_task, order, seed
    )


def split_animal(n_tasks=None, train_per_task=None, test_per_task=None, order=None, seed=0) -> TaskStream:
    """CIL, 5 tasks of 2 animals: the main demo, where fine-tuned task models beat zero-shot."""
    return _cil_stream(
        "split-animal", load_source("animal-mnist"), n_tasks, train_per_task, test_per_task, order, seed
    )


FASHION_PAIRS_ORDER = (0, 6, 2, 4, 7, 9, 1, 3, 5, 8)
"""split-fashion's default class order: the garments a pre-trained prototype head confuses most share a task
(T-shirt/shirt, pullover/coat, sneaker/ankle boot, trouser/dress, sandal/bag). A prototype head's errors *across*
tasks cannot be fixed by fine-tuning on one task; errors *inside* a task can, so this order gives fine-tuning room
to show (benchmarks/cil_headroom.md). ``order=range(10)`` gives the label order."""


def split_fashion(n_tasks=None, train_per_task=None, test_per_task=None, order=None, seed=0) -> TaskStream:
    """CIL, 5 tasks of 2 garments (Fashion-MNIST, Debian's dataset-fashion-mnist), confusable pairs together."""
    order = FASHION_PAIRS_ORDER if order is None else order
    return _cil_stream(
        "split-fashion", load_source("fashion-mnist"), n_tasks, train_per_task, test_per_task, order, seed
    )


def split_mnist_animal(
    n_tasks=None, train_per_task=None, test_per_task=None, order=None, seed=0
) -> TaskStream:
    """CIL, 10 tasks over 20 classes: digits are labels 0-9 ("digit 3"), animals 10-19 ("animal cat")."""
    source = _combine([load_source("mnist"), load_source("animal-mnist")], ("digit", "animal"))
    return _cil_stream("split-mnist-animal", source, n_tasks, train_per_task, test_per_task, order, seed)


MFA_CONFUSION_ORDER = (
    2, 3, 5, 8, 9, 10, 12, 13, 14, 16, 21, 22, 23, 24, 27, 15, 17, 18, 19, 29, 0, 1, 4, 6, 7, 11, 20, 25, 26, 28,
)  # fmt: skip
"""split-mnist-fashion-animal's default class order: `confusion_groups` of θ0's zero-shot confusion on 300
training images a class (benchmarks/confusion_order.py): digits 2,3,5,8,9 | the five tops (T-shirt, pullover,
dress, coat, shirt) | bird, cat, cow, dog, horse | sandal, sneaker, bag, ankle boot, zebra | digits 0,1,4,6,7 |
trouser, bear, elephant, giraffe, sheep. ``order=range(30)`` gives the label order."""


def mnist_fashion_animal() -> Source:
    """MNIST, Fashion-MNIST and Animal-MNIST as one 30-class source (labels 0-9, 10-19, 20-29)."""
    sources = [load_source("mnist"), load_source("fashion-mnist"), load_source("animal-mnist")]
    return _combine(sources, ("digit", "garment", "animal"))


def split_mnist_fashion_animal(
    n_tasks=None, train_per_task=None, test_per_task=None, order=None, seed=0
) -> TaskStream:
    """CIL, 6 tasks of 5 classes over 30: digits 0-9, garments 10-19 ("garment Coat"), animals 20-29, the classes
    a pre-trained prototype head confuses most in the same task. The embedded stream with headroom: fine-tuning
    on a task fixes its own confusions, so each task model clearly beats zero-shot (benchmarks/cil_headroom.md)."""
    source = mnist_fashion_animal()
    order = MFA_CONFUSION_ORDER if order is None else order
    return _cil_stream(
        "split-mnist-fashion-animal", source, n_tasks, train_per_task, test_per_task, order, seed, group=5
    )


def split_digits(n_tasks=None, train_per_task=None, test_per_task=None, order=None, seed=0) -> TaskStream:
    """CIL, 5 tasks of 2 classes on scikit-learn's 8x8 digits: a stream for tests, built in milliseconds."""
    return _cil_stream(
        "split-digits", load_source("digits"), n_tasks, train_per_task, test_per_task, order, seed
    )


def rotated_mnist(n_tasks=None, train_per_task=None, test_per_task=None, order=None, seed=0) -> TaskStream:
    """DIL, T domains (default 5): domain d rotates its MNIST sample by d·180/T degrees."""
    return _dil_stream(
        "rotated-mnist",
        load_source("mnist"),
        n_tasks,
        train_per_task,
        test_per_task,
        order,
        seed,
        lambda x, d, t: rotate(x, rotation_angle(d, t)),
        lambda d, t: f"rotation {_fmt_angle(rotation_angle(d, t))}°",
    )


def permuted_mnist(n_tasks=None, train_per_task=None, test_per_task=None, order=None, seed=0) -> TaskStream:
    """DIL, T domains (default 5): domain 0 plain MNIST, domain d a fixed seeded pixel permutation of it.

    A large input shift: the pre-trained features carry little across domains (outside the linear regime)."""

    def permute(x: torch.Tensor, d: int, t: int) -> torch.Tensor:
        n, h, w = x.shape
        return x.reshape(n, h * w)[:, pixel_permutation(d, h * w, seed)].reshape(n, h, w)

    return _dil_stream(
        "permuted-mnist",
        load_source("mnist"),
        n_tasks,
        train_per_task,
        test_per_task,
        order,
        seed,
        permute,
        lambda d, t: f"permutation {d}",
    )


CIFAR100_CLASS_ORDER = (
    70, 89, 11, 13, 63, 53, 86, 57, 41, 43, 14, 98, 52, 73, 95, 96, 33, 16, 39, 74, 25, 88, 35, 28, 79, 82, 72, 4, 30,
    17, 59, 97, 36, 38, 29, 55, 83, 7, 22, 48, 19, 47, 2, 44, 67, 71, 34, 84, 6, 46, 61, 8, 80, 10, 49, 15, 68, 9, 99,
    40, 27, 45, 51, 37, 21, 64, 92, 24, 60, 31, 5, 91, 93, 90, 65, 66, 77, 20, 58, 62, 23, 76, 75, 42, 0, 26, 87, 50,
    3, 56, 81, 1, 94, 69, 18, 78, 54, 12, 85, 32,
)  # fmt: skip
"""The authors' fixed CIFAR-100 class order (``default_class_order`` in src/datasets/cifar100.py of
VietHoang1512/CMM): task t of T holds classes ``order[t*100/T : (t+1)*100/T]``."""
IMAGENET_R_CLASS_ORDER = (
    186, 157, 67, 59, 117, 1, 122, 14, 131, 40, 66, 199, 92, 170, 197, 118, 173, 37, 146, 191, 4, 198, 64, 56, 51,
    165, 0, 107, 175, 148, 187, 161, 137, 180, 133, 181, 177, 12, 20, 74, 143, 142, 110, 116, 194, 138, 183, 89, 45,
    121, 190, 94, 36, 83, 130, 120, 21, 38, 125, 145, 182, 103, 105, 61, 32, 141, 13, 112, 111, 104, 26, 69, 39, 156,
    147, 108, 72, 10, 96, 188, 16, 63, 152, 86, 160, 119, 184, 7, 172, 132, 44, 42, 82, 15, 114, 127, 85, 168, 55, 65,
    3, 95, 171, 176, 33, 43, 17, 97, 163, 62, 75, 123, 128, 124, 99, 29, 28, 166, 41, 35, 76, 77, 5, 84, 102, 60, 78,
    70, 164, 113, 30, 91, 81, 18, 155, 179, 73, 46, 80, 31, 150, 79, 174, 153, 50, 144, 9, 167, 134, 135, 101, 49,
    106, 154, 23, 100, 48, 25, 71, 139, 162, 158, 159, 87, 90, 11, 24, 57, 19, 52, 129, 140, 178, 53, 169, 195, 126,
    47, 151, 136, 22, 58, 34, 8, 185, 54, 109, 193, 68, 192, 149, 115, 98, 88, 93, 6, 196, 189, 2, 27,
)  # fmt: skip
"""The authors' ImageNet-R class order (src/datasets/imagenetr.py), over the 200 class folders sorted by name."""
IMAGENET_R_DOMAINS = (
    "deviantart", "cartoon", "misc", "embroidery", "videogame", "painting", "art", "graphic", "origami", "tattoo",
    "toy", "sticker", "graffiti", "sculpture", "sketch",
)  # fmt: skip
IMAGENET_R_DOMAIN_ORDER = (9, 14, 7, 5, 6, 8, 13, 12, 1, 2, 10, 3, 4, 11, 0)
"""The authors' domain order (indices into IMAGENET_R_DOMAINS)."""
CUB200_CLASS_ORDER = IMAGENET_R_CLASS_ORDER
"""The authors' CUB-200 class order (CUB200.default_class_order, src/datasets/cub200.py): the same 200 numbers as
their ImageNet-R order."""


def _groups_of(n_classes: int, n_tasks: int | None, default: int) -> tuple[int, int]:
    n_tasks = default if n_tasks is None else n_tasks
    if not isinstance(n_tasks, (int, np.integer)) or n_tasks < 1 or n_classes % n_tasks:
        divisors = [d for d in range(1, n_classes + 1) if n_classes % d == 0]
        raise UserError(f"n_tasks={n_tasks!r} must divide the {n_classes} classes: choose one of {divisors}")
    return int(n_tasks), n_classes // int(n_tasks)


def cifar100(
    n_tasks=None, train_per_task=None, test_per_task=None, order=None, seed=0, root=None, download=False
) -> TaskStream:
    """CIL, CIFAR-100 in the authors' class order: 10 (default), 20 or 50 tasks of 10, 5 or 2 classes."""
    n_tasks, group = _groups_of(100, n_tasks, 10)
    order = CIFAR100_CLASS_ORDER if order is None else order
    source = load_cifar100(root, download)
    return _cil_stream("cifar100", source, n_tasks, train_per_task, test_per_task, order, seed, group=group)


def _human(names: Sequence[str]) -> tuple[str, ...]:
    return tuple(n.replace("_", " ") for n in names)


def imagenet_r(
    n_tasks=None, train_per_task=None, test_per_task=None, order=None, seed=0, root=None, download=False,
    image_size=FOLDER_IMAGE_SIZE,
) -> TaskStream:  # fmt: skip
    """CIL, ImageNet-R's 200 classes in the authors' order: 10 tasks of 20 classes by default (all domains mixed)."""
    source = load_image_folder(folder_root("imagenet-r", root), image_size)
    source = dataclasses.replace(source, name="imagenet-r", class_names=_human(source.class_names))
    n_classes = len(source.class_names)
    n_tasks, group = _groups_of(n_classes, n_tasks, 10)
    if order is None and n_classes == len(IMAGENET_R_CLASS_ORDER):
        order = IMAGENET_R_CLASS_ORDER
    return _cil_stream("imagenet-r", source, n_tasks, train_per_task, test_per_task, order, seed, group=group)


def cub200(
    n_tasks=None, train_per_task=None, test_per_task=None, order=None, seed=0, root=None, download=False,
    image_size=FOLDER_IMAGE_SIZE,
) -> TaskStream:  # fmt: skip
    """CIL, CUB-200-2011's 200 bird species in the authors' class order, cut into ``n_tasks`` (default 10) splits
    at floor(200·t/T) like the authors' code (their scripts run 5 and 20)."""
    source = cub_source(folder_root("cub200", root), image_size)
    n_classes = len(source.class_names)
    if order is None and n_classes == len(CUB200_CLASS_ORDER):
        order = CUB200_CLASS_ORDER
    splits = _check_count("n_tasks", 10 if n_tasks is None else n_tasks, n_classes)
    return _cil_stream("cub200", source, None, train_per_task, test_per_task, order, seed, splits=splits)


def cars(
    n_tasks=None, train_per_task=None, test_per_task=None, order=None, seed=0, root=None, download=False,
    image_size=FOLDER_IMAGE_SIZE,
) -> TaskStream:  # fmt: skip
    """CIL, Stanford Cars' 196 models in label order (the authors set no other), cut into ``n_tasks`` (default 10)
    splits at floor(196·t/T) like the authors' code (their scripts run 5, 10 and 20)."""
    source = cars_source(folder_root("cars", root), image_size)
    source = dataclasses.replace(source, class_names=_human(source.class_names))
    splits = _check_count("n_tasks", 10 if n_tasks is None else n_tasks, len(source.class_names))
    return _cil_stream("cars", source, None, train_per_task, test_per_task, order, seed, splits=splits)


def _domains_stream(
    name: str, domains: Sequence[tuple[str, Source]], n_tasks, train_per_task, test_per_task, order, seed
) -> TaskStream:
    """DIL over real domains: task d is domain ``order[d]``'s own data (a seeded stratified subsample of it)."""
    classes = domains[0][1].class_names
    for domain, source in domains:
        if source.class_names != classes:
            raise UserError(
                f"{name}: domain {domain!r} has other class folders than {domains[0][0]!r}; make them the same"
            )
    n_tasks = _check_count("n_tasks", n_tasks, len(domains)) or len(domains)
    order = _check_order(order, len(domains), "domain ids")[:n_tasks]
    picked = [domains[d] for d in order]
    n_tr = _check_count("train_per_task", train_per_task, min(len(s.train_labels) for _, s in picked))
    n_te = _check_count("test_per_task", test_per_task, min(len(s.test_labels) for _, s in picked))
    tasks = []
    for d, (domain, source) in zip(order, picked, strict=True):
        tr = stratified_order(source.train_labels.numpy(), _rng(seed, 0, d))[:n_tr]
        te = stratified_order(source.test_labels.numpy(), _rng(seed, 1, d))[:n_te]
        tasks.append(
            Task(
                f"domain {domain}", tuple(range(len(classes))),
                *_pick(source.train_images, source.train_labels, tr),
                *_pick(source.test_images, source.test_labels, te),
                _sizes(source, tr),
            )
        )  # fmt: skip
    splits = sorted({s.split for _, s in picked})
    split = splits[0] if len(splits) == 1 else "; ".join(f"{d}: {s.split}" for d, s in picked)
    return TaskStream(name, "dil", _human(classes), tuple(tasks), seed, split)


def imagenet_r_domains(
    n_tasks=None, train_per_task=None, test_per_task=None, order=None, seed=0, root=None, download=False,
    image_size=FOLDER_IMAGE_SIZE,
) -> TaskStream:  # fmt: skip
    """DIL, ImageNet-R's 15 renditions (art, cartoon, ...) as domains in the authors' order, all 200 classes.
    ``order`` permutes the domains found, listed in that order."""
    folder = folder_root("imagenet-r", root)
    present = {p.name.split("_", 1)[0] for p in folder.rglob("*_*") if p.is_file()}
    names = [IMAGENET_R_DOMAINS[i] for i in IMAGENET_R_DOMAIN_ORDER if IMAGENET_R_DOMAINS[i] in present]
    if not names:  # the authors' order; absent domains are left out
        raise UserError(f"imagenet-r: no domain files under {folder}; provide {FOLDER_LAYOUTS['imagenet-r']}")
    domains = [(d, load_image_folder(folder, image_size, imagenet_r_domain(d))) for d in names]
    return _domains_stream("imagenet-r-domains", domains, n_tasks, train_per_task, test_per_task, order, seed)


def _folder_dil(name: str):
    def build(
        n_tasks=None, train_per_task=None, test_per_task=None, order=None, seed=0, root=None, download=False,
        image_size=FOLDER_IMAGE_SIZE,
    ) -> TaskStream:  # fmt: skip
        domains = []
        for domain, path, test in domain_folders(name, root):
            source = (
                domainnet_lists(Path(root).expanduser(), domain, image_size) if name == "domainnet" else None
            )
            if source is None:
                source = load_image_folder(path, image_size, test_path=test)
            if name == "imageclef":
                source = numbered(source, IMAGECLEF_CLASSES)
            domains.append((domain, source))
        return _domains_stream(name, domains, n_tasks, train_per_task, test_per_task, order, seed)

    build.__doc__ = (
        f"DIL, {name}: one task per domain, every class, domains in the authors' order "
        f"({', '.join(DOMAIN_FOLDERS[name])}). Layout: {FOLDER_LAYOUTS[name]}."
    )
    return build


FOLDER_STREAMS: dict[str, Callable[..., TaskStream]] = {
    "cifar100": cifar100,
    "imagenet-r": imagenet_r,
    "imagenet-r-domains": imagenet_r_domains,
    "cub200": cub200,
    "cars": cars,
    **{name: _folder_dil(name) for name in DOMAIN_FOLDERS},
}
"""Streams read from files the user provides (``root``; CIFAR-100 may also download). Folder images are decoded at
``image_size`` (the backbone's input size in a run): training images whole, test images as open_clip's centre crop."""


STREAMS: dict[str, Callable[..., TaskStream]] = {
    "split-mnist": split_mnist,
    "split-animal": split_animal,
    "split-fashion": split_fashion,
    "split-mnist-animal": split_mnist_animal,
    "split-mnist-fashion-animal": split_mnist_fashion_animal,
    "split-digits": split_digits,
    "rotated-mnist": rotated_mnist,
    "permuted-mnist": permuted_mnist,
    **FOLDER_STREAMS,
}


def max_tasks(name: str, root: str | os.PathLike | None = None) -> int:
    """The most tasks `name` can be cut into: every class group of a class-incremental stream (built once with
    one image a task to count them), `MAX_DOMAINS` for a domain-incremental one."""
    stream = build_stream(name, train_per_task=1, test_per_task=1, root=root)
    return MAX_DOMAINS if stream.setting == "dil" else len(stream.tasks)


def build_stream(
    name: str,
    n_tasks: int | None = None,
    train_per_task: int | None = None,
    test_per_task: int | None = None,
    order: Sequence[int] | None = None,
    seed: int = 0,
    root: str | os.PathLike | None = None,
    download: bool = False,
    image_size: int | None = None,
) -> TaskStream:
    """Build a registered stream (see ``STREAMS``); same arguments, identical tensors.

    ``n_tasks``: CIL, the first n class groups (default all); DIL, the number of domains (default 5).
    ``train_per_task`` / ``test_per_task``: a seeded stratified subsample per task (None: all, or for DIL an
    equal disjoint share). ``order``: CIL, a permutation of all class ids deciding which classes form which
    task; DIL, the order in which the domains arrive. ``root`` / ``download``: the data folder of the streams in
    ``FOLDER_STREAMS`` (see ``FOLDER_LAYOUTS``); ``image_size``: the size their image files are decoded at
    (default FOLDER_IMAGE_SIZE; CIFAR-100 stays 32×32)."""
    check_choice("stream", name, STREAMS)
    files_kw = {}
    if name in FOLDER_STREAMS:
        files_kw = dict(root=root, download=download)
        if image_size is not None and name != "cifar100":
            files_kw["image_size"] = image_size
    elif root is not None or download:
        raise UserError(
            f"root/download are settings of the streams {', '.join(FOLDER_STREAMS)}, not of {name}"
        )
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"seed={seed!r} must be an integer >= 0")
    return STREAMS[name](
        n_tasks=n_tasks, train_per_task=train_per_task, test_per_task=test_per_task, order=order, seed=seed,
        **files_kw,
    )  # fmt: skip
