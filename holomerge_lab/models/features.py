"""The on-disk cache of trunk features: the frozen trunk runs once per backbone setting and set of images.

A file is keyed by the backbone's name and `settings` and by the content hash of the images, under
``<cache root>/features`` (`HOLOMERGE_CACHE` moves the root); a warm call never runs the trunk. Each file also
records its key and a digest of its features, checked when it is read: a file renamed or swapped with another
task's, or edited, is computed again, never read as these images' features. Kept apart from the families so that
they hold only models, and the cache only files.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..data import cache_dir
from ..files import cache_write
from .backbone import Backbone

_CACHE_FORMAT = 2  # bump when the on-disk layout of cached features changes (2: .npz with key and digest)


def features_dir() -> Path:
    """Folder of cached trunk features: <cache root>/features (`HOLOMERGE_CACHE` moves the root)."""
    return cache_dir() / "features"


def images_digest(images) -> str:
    """sha1 of an array's dtype, shape and bytes: the images' in a file's key, the features' inside the file."""
    a = images.detach().cpu().numpy() if isinstance(images, Tensor) else np.asarray(images)
    a = np.ascontiguousarray(a)
    h = hashlib.sha1()
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def features_key(backbone: Backbone, images) -> str:
    """Cache key: backbone name + its settings + the content hash of the images."""
    settings = json.dumps(backbone.settings, sort_keys=True, default=str)
    tag = hashlib.sha1(f"v{_CACHE_FORMAT}|{backbone.name}|{settings}".encode()).hexdigest()[:12]
    return f"{backbone.name}-{tag}-{images_digest(images)[:20]}"


def _run_trunk(backbone: Backbone, images, batch_size: int, progress: bool) -> Tensor:
    from tqdm.auto import tqdm

    n = len(images)
    chunks = []
    backbone.trunk.eval()
    with torch.inference_mode():
        for i in tqdm(
            range(0, n, batch_size),
            desc=f"{backbone.name} trunk",
            unit="batch",
            disable=not progress,
            leave=False,
        ):
            out = backbone.trunk(backbone.preprocess(images[i : i + batch_size]))
            chunks.append(out if out.dtype == torch.uint8 else out.float())  # CLIP's raw pixels stay uint8
    # outside inference mode: a normal tensor, usable later as an input to autograd / jvp
    return torch.cat(chunks).clone() if chunks else torch.empty(0)


def trunk_features(
    backbone: Backbone, images, *, batch_size: int = 256, cache: bool = True, progress: bool = True
) -> Tensor:
    """The frozen trunk's output on uint8 images, float32, computed in batches and cached on disk.

    A warm call hashes the images, loads the file and never runs the trunk. Files are written atomically.
    """
    if not cache:
        return _run_trunk(backbone, images, batch_size, progress)
    key = features_key(backbone, images)
    path = features_dir() / f"{key}.npz"
    if path.is_file():
        feats = _read(path, key, len(images))
        if feats is not None:
            return feats
    feats = _run_trunk(backbone, images, batch_size, progress)
    array = feats.numpy()
    cache_write(path, lambda f: np.savez(f, features=array, key=np.array(key), sha1=np.array(images_digest(array))))
    return feats


def _read(path: Path, key: str, rows: int) -> Tensor | None:
    """The features in `path` if it is whole and is `key`'s (recorded key, digest and row count); else None, with
    a warning, and the caller recomputes and overwrites it."""
    try:
        with np.load(path, allow_pickle=False) as z:
            array, stored_key, stored_digest = z["features"], str(z["key"]), str(z["sha1"])
    except Exception as err:  # truncated, or not this cache's file
        warnings.warn(f"cached features {path.name} are unreadable ({type(err).__name__}); computing them again",
                      stacklevel=3)  # fmt: skip
        return None
    if stored_key != key or len(array) != rows or images_digest(array) != stored_digest:
        warnings.warn(f"cached features {path.name} hold other images' features or other bytes than recorded; "
                      "computing them again", stacklevel=3)  # fmt: skip
        return None
    return torch.from_numpy(array)
