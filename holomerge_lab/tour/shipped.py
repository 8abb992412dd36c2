"""Shipped results: each notebook's heavy computations, run once and saved as JSON inside the package, so a
reader sees every figure in seconds and reruns any of them live.

In a notebook:

    results = shipped.Results("02_loss_barriers")
    measured = results.get("pair", settings, lambda: expensive(...))   # stored value, or computed live
    results.click("grid", panel, "Run all 8")                          # a panel's first press, from the bundle

A value is taken from the bundle only when it was recorded with exactly the settings asked for (the configs,
seeds and sizes the cell passes), so a reader who changes a size gets a live run, never a stale figure. The
environment decides the rest: HOLOMERGE_LIVE=1 computes everything live; HOLOMERGE_RECORD=DIR computes live and
writes each value into DIR/<notebook>.json; HOLOMERGE_RESULTS=DIR reads another bundle; HOLOMERGE_SHIPPED_ONLY=1
makes a missing value an error (the tests that open every notebook from a bundle).

The bundle is made by one command, which runs every notebook live (normal mode) and records its command line,
package versions, machine and per-cell times beside the values:

    python -m holomerge_lab.tour.shipped --out holomerge_lab/results [--fast] [NAMES ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import importlib
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import UserError
from ..files import atomic_write_text

BUNDLE = Path(__file__).parent.parent / "results"  # the shipped bundle: package data, so pip and Colab get it too
FORMAT = 2  # bumped when a file's layout changes (2: entries carry a sha256); another format is refused, not misread
NOTEBOOKS = Path(__file__).parents[2] / "notebooks"
PACKAGES = ("torch", "torchvision", "numpy", "scikit-learn", "open_clip_torch", "plotly", "ipywidgets", "holomerge_lab")


# --- values <-> JSON ---------------------------------------------------------------------------------------------
def encode(value: Any) -> Any:
    """A JSON-able form of a result: arrays, tensors, tuples, dicts with non-string keys, runs and the package's
    dataclasses keep their type (decode gives them back)."""
    from ..experiment.pipeline import RunResult

    if isinstance(value, (np.integer, np.floating, np.bool_)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return {"__float__": str(value)}  # NaN and ±inf: JSON has no word for them
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.ndarray):
        return {"__array__": encode(value.tolist()), "dtype": str(value.dtype), "shape": list(value.shape)}
    if isinstance(value, torch.Tensor):
        dtype = str(value.dtype).removeprefix("torch.")
        return {"__tensor__": encode(value.detach().cpu().tolist()), "dtype": dtype, "shape": list(value.shape)}
    if isinstance(value, RunResult):
        return {"__run__": encode(value.to_json())}  # its metrics may be NaN
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        kind = type(value)
        if not kind.__module__.startswith("holomerge_lab."):
            raise TypeError(f"cannot ship a {kind.__qualname__}: only holomerge_lab's dataclasses")
        fields = {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
        return {"__dataclass__": f"{kind.__module__}:{kind.__qualname__}", "fields": fields}
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v) for v in value]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: encode(v) for k, v in value.items()}
        return {"__items__": [[encode(k), encode(v)] for k, v in value.items()]}
    raise TypeError(f"cannot ship a {type(value).__qualname__}: return numbers, arrays, lists, dicts or runs")


def decode(value: Any) -> Any:
    """The inverse of `encode`."""
    from ..experiment.pipeline import RunResult

    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__float__" in value:
        return float(value["__float__"])
    if "__array__" in value:
        return np.array(decode(value["__array__"]), dtype=value["dtype"]).reshape(value["shape"])  # (0, 3) stays (0, 3)
    if "__tensor__" in value:
        return torch.tensor(decode(value["__tensor__"]), dtype=getattr(torch, value["dtype"])).reshape(value["shape"])
    if "__run__" in value:
        return RunResult.from_json(decode(value["__run__"]))
    if "__dataclass__" in value:
        module, name = value["__dataclass__"].split(":")
        if not module.startswith("holomerge_lab."):
            raise UserError(f"a shipped value names {module}: only holomerge_lab's classes are read")
        kind = functools.reduce(getattr, name.split("."), importlib.import_module(module))
        return kind(**{k: decode(v) for k, v in value["fields"].items()})
    if "__tuple__" in value:
        return tuple(decode(v) for v in value["__tuple__"])
    if "__items__" in value:
        return {decode(k): decode(v) for k, v in value["__items__"]}
    return {k: decode(v) for k, v in value.items()}


def settings_key(settings: Any) -> Any:
    """The settings as plain JSON (configs as their fields, tuples as lists): what a stored value is matched on."""
    return json.loads(json.dumps(encode(settings), sort_keys=True))


# --- the bundle --------------------------------------------------------------------------------------------------
def entry_digest(entry: dict) -> str:
    """sha256 of an entry's settings and value as canonical JSON: what `read_file` checks, so an edited or damaged
    value is refused rather than shown as the shipped result."""
    canonical = json.dumps([entry["settings"], entry["value"]], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _record_again(path: Path) -> str:
    """The command that records one notebook's file again (minutes; not the whole bundle)."""
    return f"record this notebook again: `python -m holomerge_lab.tour.shipped --out {path.parent} {path.stem[:2]}`"


def _remedy(path: Path) -> str:
    """What to do about one damaged file: restore it, or re-record that notebook alone."""
    again = _record_again(path)
    if path.parent.resolve() == BUNDLE.resolve():
        return f"restore it with `git checkout -- {path}` (or reinstall), or {again}"
    return again


def read_file(path: Path) -> dict:
    """One notebook's file of the bundle (empty if there is none). A file that is not whole, of another format,
    or whose entries do not match their recorded digests is refused in one line that names it and says how to
    remake that file alone."""
    if not path.is_file():
        return {"format": FORMAT, "entries": {}}
    try:
        data = json.loads(path.read_text())
    except ValueError as e:
        raise UserError(f"{path} is not valid JSON ({e}); {_remedy(path)}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else None
        raise UserError(f"{path} has format {found!r}, this version reads {FORMAT}; {_remedy(path)}")
    entries, made = data.get("entries"), data.get("made_by", {"command": "", "date": ""})
    problem = None
    if not isinstance(entries, dict):
        problem = "it has no entries"
    elif not isinstance(made, dict) or not all(isinstance(made.get(k), str) for k in ("command", "date")):
        problem = "its made_by record lacks the command or the date"
    else:
        for name, entry in entries.items():
            if not isinstance(entry, dict) or not {"settings", "value", "sha256"} <= entry.keys():
                problem = f"entry {name!r} lacks its settings, value or digest"
            elif entry["sha256"] != entry_digest(entry):
                problem = f"entry {name!r} does not match its recorded digest (edited or damaged)"
            if problem:
                break
    if problem:
        raise UserError(f"{path}: {problem}; {_remedy(path)}")
    return data


def write_json(path: Path, data: dict) -> None:
    """Compact (an indented array takes a line a number), each entry with its digest, and atomic: a reader never
    finds half a file."""
    for entry in data["entries"].values():
        entry["sha256"] = entry_digest(entry)
    data["format"] = FORMAT
    atomic_write_text(path, json.dumps(data, separators=(",", ":"), allow_nan=False) + "\n")


def bundle_folder() -> Path:
    """The bundle the environment names: HOLOMERGE_RESULTS, else the shipped one."""
    return Path(os.environ.get("HOLOMERGE_RESULTS") or BUNDLE)


def benchmark_path(name: str) -> Path:
    """A file or folder of the repository's benchmarks/ (recorded searches a notebook reads): beside the notebooks,
    in a clone under the working folder (Colab), or beside the package (an editable install). A pip install from
    PyPI has no benchmarks/: the error says to clone the repository."""
    package = Path(__file__).resolve().parents[2]
    for root in (Path("..") / "benchmarks", Path("holomerge_lab") / "benchmarks", Path("benchmarks"), package / "benchmarks"):
        if (root / name).exists():
            return root / name
    raise UserError(f"benchmarks/{name} is not here (from {Path.cwd()}): it ships with the repository, not the "
                    "package; clone the repository (its README says how) and open the notebook there")  # fmt: skip


def live_from_environment() -> bool:
    """Everything live: HOLOMERGE_LIVE=1, or HOLOMERGE_RECORD (a recording computes every value)."""
    return os.environ.get("HOLOMERGE_LIVE") == "1" or bool(os.environ.get("HOLOMERGE_RECORD"))


class Results:
    """A notebook's shipped values: `get` a computation's value or `click` a panel's first press from them."""

    def __init__(self, notebook: str, folder: Path | None = None):
        self.notebook = notebook
        env = os.environ.get
        self.folder = Path(folder) if folder else bundle_folder()
        if env("HOLOMERGE_RESULTS") and not self.folder.is_dir():  # else every cell would quietly run live
            raise UserError(f"HOLOMERGE_RESULTS={self.folder} is not a folder (from {Path.cwd()}): give a bundle's "
                            "folder, best as an absolute path, or unset it for the shipped one")  # fmt: skip
        self.record = Path(env("HOLOMERGE_RECORD")) if env("HOLOMERGE_RECORD") else None
        self.live = live_from_environment()  # set True to rerun every cell live
        self.strict = env("HOLOMERGE_SHIPPED_ONLY") == "1"
        self.data = read_file(self.folder / f"{notebook}.json")
        self.shown: list[str] = []  # the names taken from the bundle (what the tests check)

    def made_by(self) -> str:
        made = self.data.get("made_by")
        return f"`{made['command']}` on {made['date'][:10]}" if made else f"a recording in {self.folder}"

    def stored(self, name: str, settings: Any) -> tuple[bool, Any]:
        """(True, value) when the bundle holds `name` recorded with these settings."""
        entry = self.data["entries"].get(name)
        if self.live or entry is None or entry["settings"] != settings_key(settings):
            if self.strict and not self.live:
                why = "is not in it" if entry is None else "was recorded with other settings"
                raise UserError(f"{self.notebook}: {name!r} {why}; {_record_again(self.folder / f'{self.notebook}.json')}")
            return False, None
        self.shown.append(name)
        return True, decode(entry["value"])

    def keep(self, name: str, settings: Any, value: Any, seconds: float) -> None:
        if self.record is None:
            return
        path = self.record / f"{self.notebook}.json"
        data = read_file(path)
        data["notebook"] = self.notebook
        data["entries"][name] = {"settings": settings_key(settings), "value": encode(value), "seconds": seconds}
        write_json(path, data)

    def get(self, name: str, settings: Any, compute: Callable[[], Any]) -> Any:
        """The value recorded under `name` with `settings`, or `compute()` (recorded when HOLOMERGE_RECORD is set).
        Says which, in one line."""
        found, value = self.stored(name, settings)
        if found:
            print(f"[{name}: shipped result, made by {self.made_by()}; `results.live = True` reruns it live]")
            return value
        began = time.perf_counter()
        value = compute()
        self.keep(name, settings, value, time.perf_counter() - began)
        return value

    def lookup(self, configs: Sequence) -> tuple[list, str] | None:
        """Runs of exactly these configs recorded anywhere in this bundle (None when live, or any is missing)."""
        return None if self.live else find_recorded(configs, self.folder)

    def click(self, name: str, panel, button: str = "Run") -> None:
        """A panel's press of `button`: shown from the bundle when its runs were recorded for exactly the configs
        that press would run now, else run live. The panel's later presses are answered from this bundle too,
        wherever it holds their runs (`panel.recorded`); its "rerun live" box, or `results.live`, runs them here."""
        panel.recorded = self.lookup
        configs = panel.planned(button)
        settings = {"button": button, "configs": configs, "extra": {k: w.value for k, w in panel.extra.items()}}
        found, value = self.stored(name, settings)
        if found:
            panel.show_results(value, f"shown from shipped results ({self.made_by()}); a button reruns it live")
            return
        before, began = len(panel.results), time.perf_counter()
        panel.click(button, configs)
        if panel.error is None:
            self.keep(name, settings, panel.results[before:], time.perf_counter() - began)


# --- runs recorded anywhere in the bundle: a panel's press answered from them ----------------------------------------
def run_key(settings: dict) -> str:
    """A recorded run's settings (`RunResult.config`, `pipeline.recorded_settings`) as one canonical string."""
    return json.dumps(settings, sort_keys=True)


def _runs_in(value: Any) -> Iterator[dict]:
    """Every encoded run inside a stored value (a panel's press, a list of runs, a dict of them)."""
    if isinstance(value, list):
        for item in value:
            yield from _runs_in(item)
    elif isinstance(value, dict):
        if "__run__" in value:
            yield value
        else:
            for item in value.values():
                yield from _runs_in(item)


@functools.lru_cache(maxsize=4)
def _library(folder: str, stamps: tuple) -> dict[str, tuple[Any, str]]:
    """run_key -> (run, where it was recorded), over every file of the bundle. A file that fails `read_file`'s
    checks adds nothing: its runs are run live rather than shown unchecked. `stamps` (names, sizes, mtimes)
    makes a rewritten file read again."""
    library: dict[str, tuple[Any, str]] = {}
    for path in sorted(Path(folder).glob("*.json")):
        try:
            data = read_file(path)
        except UserError:
            continue
        made = data.get("made_by") or {}
        source = f"`{made.get('command', '?')}` on {str(made.get('date', ''))[:10]} ({path.stem})"
        for entry in data["entries"].values():
            for raw in _runs_in(entry["value"]):
                run = decode(raw)
                library.setdefault(run_key(run.config), (run, source))
    return library


def find_recorded(configs: Sequence, folder: Path) -> tuple[list, str] | None:
    """The bundle's runs of exactly these configs (every one, in order) and where they were recorded; None when any
    is missing (then the press runs live)."""
    from ..experiment.pipeline import recorded_settings

    if not configs or not Path(folder).is_dir():
        return None
    files = sorted(Path(folder).glob("*.json"))
    library = _library(str(folder), tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files))
    found = [library.get(run_key(recorded_settings(c))) for c in configs]
    if any(f is None for f in found):
        return None
    return [run for run, _ in found], "; ".join(sorted({source for _, source in found}))


def bundle_lookup(configs: Sequence) -> tuple[list, str] | None:
    """A panel's default: its press answered from the bundle the environment names, unless the environment asks
    for everything live."""
    return None if live_from_environment() else find_recorded(configs, bundle_folder())


# --- the command that makes the bundle ---------------------------------------------------------------------------
def versions() -> dict[str, str]:
    found = {"python": sys.version.split()[0]}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def record_notebook(path: Path, *, fast: bool, timeout: int, attempts: int = 3) -> dict:
    """Run one notebook live in a child process, recording its values into a scratch file; returns that file's
    data plus the run's seconds and per-cell times. A run stuck past `timeout` is killed and started again."""
    import nbformat

    from .run_notebook import cell_times, code_digest

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HOLOMERGE_LIVE": "1"}
    env.pop("HOLOMERGE_FAST", None)
    env.pop("HOLOMERGE_SHIPPED_ONLY", None)
    if fast:
        env["HOLOMERGE_FAST"] = "1"
    for attempt in range(1, attempts + 1):
        with tempfile.TemporaryDirectory() as scratch:
            env["HOLOMERGE_RECORD"] = scratch
            executed = Path(scratch) / path.name
            process = subprocess.Popen(
                [sys.executable, "-m", "holomerge_lab.tour.run_notebook", str(path), "--cwd", scratch,
                 "--timeout", str(timeout), "--keep", str(executed)],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
            )  # fmt: skip
            try:
                stdout, stderr = process.communicate(timeout=timeout * 4)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate()
                print(f"{path.name}: attempt {attempt} stuck; running it again", file=sys.stderr)
                continue
            if process.returncode != 0:
                raise UserError(f"{path.name} failed, nothing recorded for it:\n{stderr[-3000:]}")
            data = read_file(Path(scratch) / f"{path.stem}.json")
            data["made_by"] = {
                "seconds": float(stdout.split()[-1]), "cells": cell_times(nbformat.read(executed, 4)),
                "code_sha256": code_digest(nbformat.read(path, 4)),  # the code that made the values
            }  # fmt: skip
            return data
    raise UserError(f"{path.name}: no run finished in {attempts} attempts")


def main(argv: Sequence[str] | None = None) -> int:
    from ..analysis.bench import machine
    from ..data import cache_dir

    parser = argparse.ArgumentParser(prog="python -m holomerge_lab.tour.shipped", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="notebook prefixes, e.g. 00 04 (default: every notebook but 08)")
    parser.add_argument("--out", type=Path, required=True, help="the bundle's folder (the shipped one: "
                        "holomerge_lab/results); each notebook's file there is replaced once it has run")
    parser.add_argument("--fast", action="store_true", help="fast mode (HOLOMERGE_FAST=1): a reduced bundle")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds one cell may take")
    args = parser.parse_args(argv)
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    chosen = [p for p in paths if (p.name[:2] in args.names if args.names else p.name[:2] != "08")]
    if not chosen:
        parser.error(f"no notebook matches {args.names}; choose among {[p.name[:2] for p in paths]}")
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out} is a file: give a folder")
    command = shlex.join(["python", "-m", "holomerge_lab.tour.shipped", *(argv if argv is not None else sys.argv[1:])])
    for path in chosen:
        cache_empty = not any(cache_dir().glob("*/*"))  # what the live times started from: said beside them
        data = record_notebook(path, fast=args.fast, timeout=args.timeout)
        data["notebook"] = path.stem
        data["made_by"].update(command=command, fast=args.fast, packages=versions(), machine=machine(), cache_empty=cache_empty,
                               date=datetime.now().isoformat(timespec="seconds"))
        write_json(args.out / f"{path.stem}.json", data)
        print(f"{path.name}: {len(data['entries'])} values in {data['made_by']['seconds']:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
