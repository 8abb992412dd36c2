"""Folder streams: the CLIP benchmarks read from files the user provides, cut into tasks as the authors cut them.

CIL: CIFAR-100, ImageNet-R, CUB-200 and Stanford Cars in the authors' class orders. DIL: ImageNet-R's renditions,
DomainNet, Office and ImageCLEF, one task per real domain in the authors' domain orders. Where their files are
found and how they are decoded is folder_sources.py; the cutting helpers are tasks.py. ``FOLDER_STREAMS`` registers
them; streams.py adds them to ``STREAMS`` beside the embedded streams, which need no files.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..errors import UserError
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
from .sources import Source, load_image_folder
from .tasks import (
    Task,
    TaskStream,
    _check_count,
    _check_order,
    _cil_stream,
    _pick,
    _rng,
    _sizes,
    stratified_order,
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
