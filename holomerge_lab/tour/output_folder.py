"""Folders that a generator owns: written whole, replaced whole, and never one that holds someone else's files."""

from __future__ import annotations

import shutil
from pathlib import Path


def replace_folder(out: Path, marker: str, kind: str, writer: str) -> None:
    """Make `out` an empty folder marked as `writer`'s; refuse a folder with anything in it that lacks the marker,
    so a mistyped --out can never wipe a folder of notes or a checkout."""
    if out.exists():
        if not out.is_dir() or (any(out.iterdir()) and not (out / marker).is_file()):
            raise SystemExit(
                f"{out} exists and is not a {kind} folder (no {marker}): refusing to overwrite it"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / marker).write_text(f"written by {writer}; replaced by the next build\n")
