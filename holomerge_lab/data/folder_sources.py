"""The CLIP benchmarks' files as sources: CIFAR-100, ImageNet-R, DomainNet, Office-31, Office-Home, ImageCLEF,
CUB-200, Stanford Cars.

Each is read from a folder the user provides (``root``; CIFAR-100 may also download), laid out as
``FOLDER_LAYOUTS`` says, with the official train/test split where the data set has one. The streams that cut them
into tasks, in the authors' class and domain orders, are in folder_streams.py (``FOLDER_STREAMS``).
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from .sources import Samples, Source, cache_dir, load_image_folder, load_samples, to_source

DOMAIN_FOLDERS = {
    # the authors' DomainNet order: DomainNet.default_domain_order [0, 5, 4, 1, 3, 2] over _DomainNet.DOMAINS
    # (src/datasets/domainnet.py of VietHoang1512/CMM)
    "domainnet": ("clipart", "sketch", "real", "infograph", "quickdraw", "painting"),
    "office-home": ("Art", "Clipart", "Product", "Real_World"),
    "office-31": ("amazon", "dslr", "webcam"),
    "imageclef": ("b", "c", "i", "p"),  # _ImageCLEF.DOMAINS, in its default order (src/datasets/imageclef.py)
}
"""Each DIL folder stream's domains, in the order the authors' code presents them."""
IMAGECLEF_CLASSES = (
    "aeroplane", "bike", "bird", "boat", "boele", "bus", "car", "dog", "horse", "monitor", "motorbike", "people",
)  # fmt: skip
"""The authors' ImageCLEF class names (_ImageCLEF.CLASSES, src/datasets/imageclef.py), which name the numbered class
folders 0..11 of the ImageCLEF-DA download. "boele" (the bottle class) is their spelling, kept: it is the word the
authors' prompts used."""
FOLDER_IMAGE_SIZE = 224
"""Folder images are decoded at CLIP's input size (uint8, so 150 KB an image: subsample large sets)."""
_PRESPLIT = (
    "or the authors' pre-split ROOT/train/<domain>/<class>/<image> and ROOT/test/<domain>/<class>/<image>"
)
FOLDER_LAYOUTS = {
    "imagenet-r": "ROOT/<class>/<domain>_<n>.jpg, the imagenet-r.tar layout with class folders renamed from wnids to "
    "names (e.g. ROOT/goldfish/art_0.jpg; README.txt in the tar maps them), optionally under ROOT/train and ROOT/test",
    "domainnet": "ROOT/<domain>/<class>/<image> with domains clipart, infograph, painting, quickdraw, real, sketch, "
    "and the official lists ROOT/<domain>_train.txt, ROOT/<domain>_test.txt beside them (without the lists: a "
    "seeded 80/20 split)",
    "office-home": f"ROOT/<domain>/<class>/<image> with domains Art, Clipart, Product, Real_World, {_PRESPLIT}",
    "office-31": "ROOT/<domain>/images/<class>/<image> (or ROOT/<domain>/<class>/<image>) with domains amazon, dslr, "
    f"webcam, {_PRESPLIT}",
    "imageclef": f"ROOT/<domain>/<class>/<image> with domains b, c, i, p (class folders named or numbered 0..11), "
    f"{_PRESPLIT}",
    "cub200": "the CUB_200_2011 folder (images/, images.txt, train_test_split.txt: the official split), or ROOT/train "
    "and ROOT/val (or test) with class folders such as 001.Black_footed_Albatross",
    "cars": "the Stanford Cars folder: devkit/cars_meta.mat, devkit/cars_train_annos.mat, "
    "cars_test_annos_withlabels.mat (or devkit/), images in train/ (or cars_train/) and test/ (or cars_test/); or "
    "ROOT/train/<class>/<image> and ROOT/test/<class>/<image>",
}


def read_cifar100(folder: str | os.PathLike) -> tuple:
    """Arrays of the CIFAR-100 python version in ``folder`` (train, test, meta pickles), as torchvision reads them:
    images [N,32,32,3] uint8, fine labels, fine label names."""
    folder = Path(folder)

    def unpickle(name: str) -> dict:
        with open(folder / name, "rb") as f:
            return pickle.load(f, encoding="latin1")

    train, test, meta = unpickle("train"), unpickle("test"), unpickle("meta")

    def images(part: dict) -> np.ndarray:
        return np.asarray(part["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)

    names = tuple(meta["fine_label_names"])  # as torchvision has them, underscores kept: the authors' prompts
    return images(train), train["fine_labels"], images(test), test["fine_labels"], names


def load_cifar100(root: str | os.PathLike | None = None, download: bool = False) -> Source:
    """CIFAR-100 from ``ROOT/cifar-100-python/{train,test,meta}`` (the python pickles).

    ``root`` defaults to ``cache_dir()/cifar100``. ``download=True`` has torchvision fetch and verify the archive
    there first (online only); the files are then read by `read_cifar100` either way."""
    root = Path(root).expanduser() if root is not None else cache_dir() / "cifar100"
    folder = root / "cifar-100-python"
    if download and not folder.is_dir():
        from torchvision.datasets import CIFAR100

        try:
            CIFAR100(str(root), train=True, download=True)
        except (RuntimeError, OSError) as err:
            raise UserError(f"could not download CIFAR-100 into {root} ({err}); are you online?") from err
    missing = [n for n in ("train", "test", "meta") if not (folder / n).is_file()]
    if missing:
        raise UserError(
            f"CIFAR-100 not found: {folder} lacks {', '.join(missing)}. Put the python version there "
            "(ROOT/cifar-100-python/train, test, meta; data_root=ROOT, CLI --data-root), or pass download=True "
            "(CLI --download) when online"
        )
    return to_source("cifar100", read_cifar100(folder))


def folder_root(name: str, root) -> Path:
    if root is None or not Path(root).expanduser().is_dir():
        where = (
            "no folder was given (RunConfig.data_root, CLI --data-root)"
            if root is None
            else f"{root} is no folder"
        )
        raise UserError(f"{name}: {where}; provide a folder laid out as {FOLDER_LAYOUTS[name]}")
    return Path(root).expanduser()


def cub_source(root: Path, image_size: int) -> Source:
    """CUB-200-2011 with the official split (images.txt + train_test_split.txt), or a train/val folder tree."""
    listing, split_file = root / "images.txt", root / "train_test_split.txt"
    if listing.is_file() and split_file.is_file() and (root / "images").is_dir():
        paths = dict(line.split() for line in listing.read_text().splitlines() if line.strip())
        is_train = dict(line.split() for line in split_file.read_text().splitlines() if line.strip())
        classes = sorted({Path(rel).parent.name for rel in paths.values()})
        index = {c: i for i, c in enumerate(classes)}
        parts: dict[str, Samples] = {"1": [], "0": []}
        for image_id, rel in paths.items():
            parts[is_train[image_id]].append((str(root / "images" / rel), index[Path(rel).parent.name]))
        source = load_samples(
            "cub200", parts["1"], parts["0"], classes, image_size, f"the official {split_file.name}"
        )
    else:
        source = load_image_folder(root, image_size)
    # class folders are "001.Black_footed_Albatross": the authors strip the number and the underscores
    names = tuple(re.sub(r"^\d+\.", "", c).replace("_", " ") for c in source.class_names)
    return dataclasses.replace(source, name="cub200", class_names=names)


def cars_source(root: Path, image_size: int) -> Source:
    """Stanford Cars from its devkit annotations (class names from cars_meta.mat), or a train/test folder tree."""
    devkit = root / "devkit"
    if not (devkit / "cars_meta.mat").is_file():
        return dataclasses.replace(load_image_folder(root, image_size), name="cars")
    from scipy.io import loadmat

    def annotated(mat_names: Sequence[str], folders: Sequence[str]) -> Samples:
        mat = next((p for p in (root / n for n in mat_names) if p.is_file()), None)
        images = next((p for p in (root / f for f in folders) if p.is_dir()), None)
        if mat is None or images is None:
            raise UserError(f"cars: {root} lacks {mat_names[0]} or an image folder {folders}; provide "
                            f"{FOLDER_LAYOUTS['cars']}")  # fmt: skip
        rows = np.atleast_1d(loadmat(mat, squeeze_me=True)["annotations"])
        return [(str(images / str(a["fname"])), int(a["class"]) - 1) for a in rows]  # classes count from 1

    names = [str(n) for n in np.atleast_1d(loadmat(devkit / "cars_meta.mat", squeeze_me=True)["class_names"])]
    train = annotated(["devkit/cars_train_annos.mat"], ["train", "cars_train"])
    test = annotated(["cars_test_annos_withlabels.mat", "devkit/cars_test_annos_withlabels.mat"],
                     ["test", "cars_test"])  # fmt: skip
    return load_samples("cars", train, test, names, image_size, "the official devkit annotations")


def imagenet_r_domain(name: str) -> Callable[[str], bool]:
    """The file filter of one ImageNet-R domain: the file name's prefix before the first '_' equals it exactly.

    (The authors' loader tests ``startswith`` and then reuses one cached folder for every domain, so each of its
    "domain" tasks holds all domains.)"""
    return lambda path: Path(path).name.split("_", 1)[0] == name


def domain_folders(name: str, root) -> list[tuple[str, Path, Path | None]]:
    """The known domains of `name` under root, in DOMAIN_FOLDERS order (matched ignoring case, spaces and
    underscores), each as (domain, folder, test folder or None): the authors' ROOT/train/<domain> with
    ROOT/test/<domain> where both exist, else ROOT/<domain> (or ROOT/<domain>/images)."""
    folder = folder_root(name, root)

    def subfolders(parent: Path) -> dict[str, Path]:
        if not parent.is_dir():
            return {}
        return {p.name.lower().replace(" ", "_"): p for p in parent.iterdir() if p.is_dir()}

    present, train, test = subfolders(folder), subfolders(folder / "train"), subfolders(folder / "test")
    found = []
    for domain in DOMAIN_FOLDERS[name]:
        key = domain.lower()
        if key in train and key in test:
            found.append((domain, train[key], test[key]))
        elif key in present:
            path = present[key]
            found.append((domain, path / "images" if (path / "images").is_dir() else path, None))
    if not found:
        raise UserError(
            f"{name}: no domain folder under {folder}; provide a folder laid out as {FOLDER_LAYOUTS[name]}"
        )
    return found


def _read_list(root: Path, path: Path) -> list[tuple[str, str]]:
    """A DomainNet list file: lines "<domain>/<class>/<file> <label>" -> (file path, class name).

    The class comes from the path's folder, as in the authors' loader; the number on the line is not used."""
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            rel = line.split()[0]
            rows.append((str(root / rel), rel.split("/")[1]))
    return rows


def domainnet_lists(root: Path, domain: str, image_size: int) -> Source | None:
    """One DomainNet domain from its official ROOT/<domain>_train.txt and _test.txt, or None without them.
    Class ids follow the sorted class names, like the authors' loader and ImageFolder."""
    lists = [root / f"{domain}_{part}.txt" for part in ("train", "test")]
    if not all(p.is_file() for p in lists):
        return None
    train, test = (_read_list(root, p) for p in lists)
    classes = sorted({c for _, c in (*train, *test)})
    index = {c: i for i, c in enumerate(classes)}
    return load_samples(
        f"domainnet:{domain}", [(p, index[c]) for p, c in train], [(p, index[c]) for p, c in test], classes,
        image_size, "the official <domain>_train.txt / _test.txt lists",
    )  # fmt: skip


def numbered(source: Source, names: Sequence[str]) -> Source:
    """Class folders numbered 0..n-1 (the ImageCLEF-DA download) named by `names`; named folders stay."""
    if sorted(source.class_names) != sorted(str(i) for i in range(len(names))):
        return source
    # ImageFolder sorts "10" before "2": relabel so that label i is folder "i"
    order = [int(c) for c in source.class_names]
    relabel = torch.tensor(order)
    return dataclasses.replace(
        source, train_labels=relabel[source.train_labels], test_labels=relabel[source.test_labels],
        class_names=tuple(names),
    )  # fmt: skip
