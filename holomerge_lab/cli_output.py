"""The command line's output: claiming, locking and writing the --out folder of a run, compare or sweep, and the
words of its messages (a setting named by its flag, a warning in one line).

Before any work starts, the folder (and the cache folder) must be one this process can write, held by this run
alone, with no earlier results it would silently replace; after the run, every run's JSON, summary.json and the
HTML report go there, and run-settings.json records the settings that `--resume DIR` continues with. It sits on
the top floor beside cli.py, which holds the parser, ``main`` and the subcommands and imports from here (never the
other way round).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from .errors import SettingError, UserError

# Written into --out before a run starts: the command and every setting, so that `--resume DIR` alone continues it
SETTINGS_FILE = "run-settings.json"
# Options that say where and how to report, not what to run: they may differ between a run and its resumption
OUTPUT_OPTIONS = frozenset({"command", "out", "force", "resume", "json", "quiet", "margin"})


# The data layer's names for settings whose flag is named after RunConfig's field
_ALIASES = {"n_tasks": "tasks"}


def _message(error: UserError, parser: argparse.ArgumentParser) -> str:
    """The error in the words of the command line: a setting is named by the flag a user types (`--tasks`), where
    the Python API names its field (`n_tasks`)."""
    if isinstance(error, SettingError):
        flag = "--" + _ALIASES.get(error.setting, error.setting).replace("_", "-")
        if flag in _options(parser):
            return f"{flag} {error.problem}"
    return str(error)


def _options(parser: argparse.ArgumentParser) -> set[str]:
    """Every option string of `parser` and its subcommands."""
    found = set()
    for action in parser._actions:
        found.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _options(sub)
    return found


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as the CLI's other messages: one line, no source excerpt."""
    print(f"holomerge-lab: warning: {message}", file=sys.stderr)


def _no_constant(token: str):
    """json's hook for NaN and Infinity: no run writes them, so a file holding one was edited or is not a run's."""
    raise ValueError(f"it holds {token}, which no run writes")


def _claim(out: Path, names: Sequence[str], force: bool) -> None:
    """Refuse to overwrite earlier results unless --force."""
    existing = [out / n for n in names if (out / n).exists()]
    if existing and not force:
        raise UserError(
            f"{existing[0]} already exists; pass --force to overwrite it, or choose another --out"
        )


def _discard(out: Path, names: Sequence[str]) -> None:
    """Remove what a fresh run that failed wrote into --out (its settings and checkpoints), so that a bad setting
    leaves nothing behind and the next run there needs no --force."""
    (out / SETTINGS_FILE).unlink(missing_ok=True)
    for name in names:
        shutil.rmtree(out / "checkpoints" / name, ignore_errors=True)
    with contextlib.suppress(OSError):
        (out / "checkpoints").rmdir()


def _stem(label: str) -> str:
    """An ASCII file name for a row label: "holistic −pre−during" -> "holistic-no-pre-no-during"."""
    return label.replace(" −", "-no-").replace("−", "-no-").replace(" ", "_")


def _writable_folder(folder: Path, name: str) -> list[Path]:
    """Make `folder` (with its missing parents) and prove this process can write in it, or raise a one-line error
    naming `name`. Returns the folders it made, outermost first."""
    folder = Path(os.path.abspath(folder))
    try:
        existing = next(p for p in (folder, *folder.parents) if p.exists())
    except OSError as e:  # a folder on the way that this user may not enter
        raise UserError(
            f"cannot write into {name} {folder} ({e.strerror}); choose a folder you can write"
        ) from None
    if not existing.is_dir():
        what = (
            f"{name} {folder} is a file"
            if existing == folder
            else f"{name} {folder} cannot be made: {existing} is a file"
        )
        raise UserError(f"{what}, not a folder; choose a folder")
    created = [p for p in (folder, *folder.parents) if not p.exists()][::-1]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as e:
        _remove_empty(created)
        raise UserError(
            f"cannot write into {name} {folder} ({e.strerror}); choose a folder you can write"
        ) from None
    return created


@contextlib.contextmanager
def _output_folder(out: Path) -> Iterator[None]:
    """Make sure --out is a folder this process can write, before any work, and hold it for this run alone.

    A folder this makes is removed again if the run ends with nothing in it. Another run writing the same folder
    holds an exclusive lock on it (flock, released by the kernel even when a run is killed)."""
    created = _writable_folder(out, "--out")
    lock = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(lock)
        raise UserError(
            f"another holomerge-lab run is writing into {out} right now; wait for it, or choose another --out"
        ) from None
    try:
        yield
    finally:
        os.close(lock)
        _remove_empty(created)


def _check_cache() -> None:
    """The cache (trunk features, task models) is written during the run: check its folder before any work."""
    from .data import cache_dir

    _writable_folder(cache_dir(), "the cache folder (HOLOMERGE_CACHE)")


def _remove_empty(folders: Sequence[Path]) -> None:
    """Remove the folders this run made, innermost first, as long as they are empty."""
    for folder in reversed(folders):
        with contextlib.suppress(OSError):
            folder.rmdir()


def _name(label: str, seed: int, several: bool) -> str:
    """A run's file stem: its label, and with several seeds also the seed."""
    return f"{_stem(label)}-seed{seed}" if several else _stem(label)


def _save(results, args: argparse.Namespace, command: str, several: bool) -> None:
    from .analysis.evidence import to_json
    from .files import atomic_write_text
    from .tour.viz import write_report

    runs = [r.to_json() for r in results]
    for run in runs:
        atomic_write_text(
            args.out / f"{_name(run['label'], run['seed'], several)}.json",
            json.dumps(run, indent=1, allow_nan=False),
        )
    summary = {"command": command, **to_json(runs, margin=args.margin)}
    atomic_write_text(args.out / "summary.json", json.dumps(summary, indent=1, allow_nan=False))
    report = write_report(results, args.out / "report.html", command=command, margin=args.margin)
    print(f"wrote {len(results)} run JSON file(s), summary.json and {report}", file=sys.stderr)


def _settings(args: argparse.Namespace) -> dict:
    return {k: v for k, v in vars(args).items() if k not in OUTPUT_OPTIONS}
