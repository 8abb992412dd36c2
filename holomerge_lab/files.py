"""Writing files: a reader never finds half of one, a failed write says why in one line, and a cache that cannot be
written never stops a run.

Results (a run's JSON, summary.json, checkpoints, the shipped bundle) are written to a temporary name in the same
folder and renamed, so a full disk or a killed process leaves the old file whole. A cache entry (decoded data, trunk
features, task models) is only a shortcut: when its folder is read-only or full, the run goes on without it and
says so once, naming the folder, rather than ending in a traceback after minutes of work.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .errors import UserError

FOR_RESULTS = "free space there or choose another --out"
FOR_CACHE = "free space there, or set HOLOMERGE_CACHE to a folder you can write"


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


def os_error(error: BaseException | None) -> OSError | None:
    """The OSError behind `error`, if any: torch.save and np.savez re-raise a failed write (a full disk) as another
    error, with the OSError as its context."""
    while error is not None and not isinstance(error, OSError):
        error = error.__cause__ or error.__context__
    return error


def atomic_write(path: Path, write: Callable[[BinaryIO], object], advice: str = FOR_RESULTS) -> Path:
    """`write(file)` into a temporary name in the same folder, then rename: a reader sees the whole file or none.
    A write that fails for want of space or permission leaves nothing behind and raises one line ending in
    `advice` (what to do about it)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
    except OSError as e:
        raise UserError(f"cannot write {path} ({e.strerror}); {advice}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it owner-only; a file open() made would not be
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        cause = os_error(e)
        if cause is not None:
            raise UserError(f"cannot write {path} ({cause.strerror}); {advice}") from None
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    """A UTF-8 text file, atomically (see `atomic_write`)."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def cache_write(path: Path, write: Callable[[BinaryIO], object]) -> bool:
    """Write a cache entry atomically if the cache folder allows it; else warn in one line and return False (the
    run goes on: the entry is computed again next time)."""
    try:
        atomic_write(path, write, FOR_CACHE)
    except UserError as e:
        warnings.warn(f"{e}; going on without caching it", stacklevel=3)
        return False
    return True
