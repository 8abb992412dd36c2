"""Streams: the registry of every stream (``STREAMS``) and ``build_stream``, with the embedded streams.

Class-incremental (CIL): each task brings new classes. Domain-incremental (DIL): every task has all classes,
seen through a different transformation (rotations, pixel permutations) or in a different real domain (the CLIP
benchmarks' folders). Every stream is one builder function registered in ``STREAMS``; all randomness comes from
``seed``: same arguments, same tensors. The streams defined here are the embedded ones, built from the sets that
ship in installed packages (MNIST, Animal-MNIST, Fashion-MNIST, scikit-learn's digits); the file streams of the
CLIP benchmarks are folder_streams.py, the task types and cutting helpers both share are tasks.py, and where the
pixels come from is sources.py and folder_sources.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..errors import UserError, check_choice
from .folder_sources import DOMAIN_FOLDERS
from .folder_streams import FOLDER_STREAMS
from .sources import Source, load_source
from .tasks import (
    MAX_DOMAINS,
    TaskStream,
    _cil_stream,
    _combine,
    _dil_stream,
    _fmt_angle,
    pixel_permutation,
    rotate,
    rotation_angle,
)


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


# The domain-incremental streams (every task has every class): what the paper preset runs as the authors' DIL script
DIL_STREAMS = frozenset({"rotated-mnist", "permuted-mnist", "imagenet-r-domains", *DOMAIN_FOLDERS})


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
