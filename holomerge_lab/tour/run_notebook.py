"""Run one notebook headless with nbclient: the child process the tests and benchmarks start, each under a
wall-clock limit of its own (nbclient's per-cell timeout alone does not bound a stalled run).

    python -m holomerge_lab.tour.run_notebook NOTEBOOK [--cwd DIR] [--timeout S] [--kernel NAME] [--keep PATH]

Prints the seconds the run took; a failing cell exits non-zero with nbclient's error. `--keep` writes the executed
notebook (its outputs and nbclient's per-cell timestamps: `cell_times`).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import nbformat
from nbclient import NotebookClient

# the first-line comment benchmarks/notebook_times.py --stamp writes atop a slow cell
SLOW_COMMENT = re.compile(r"^# ≈ .* live on 2 cores.*\(benchmarks/notebook_times\.json\)\n")


def without_comments(source: str) -> str:
    """A cell's code without its comment lines (the measured-time stamps are comment lines too)."""
    return "\n".join(line for line in source.split("\n") if not line.lstrip().startswith("#"))


def code_digest(notebook) -> str:
    """A digest of the notebook's code, its comment lines left out: what a measured time or a shipped value belongs
    to. A comment changes no value, so rewording one (or stamping a time) does not make the shipped results stale."""
    code = [without_comments("".join(c["source"])) for c in notebook["cells"] if c["cell_type"] == "code"]
    return hashlib.sha256("\x00".join(code).encode()).hexdigest()


def cell_seconds(cell) -> float | None:
    """A cell's run time from the timestamps nbclient records (execute_input to execute_reply)."""
    timing = cell.get("metadata", {}).get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not (start and end):
        return None
    parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    return (parse(end) - parse(start)).total_seconds()


def cell_times(notebook) -> list[dict]:
    """Every executed code cell's index, seconds and first line."""
    return [
        {"index": i, "seconds": s, "first_line": SLOW_COMMENT.sub("", c["source"]).strip().splitlines()[0][:80]}
        for i, c in enumerate(notebook.cells)
        if c.cell_type == "code" and c["source"].strip() and (s := cell_seconds(c)) is not None
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m holomerge_lab.tour.run_notebook")
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--cwd", type=Path, help="the kernel's working folder (default: the notebook's)")
    parser.add_argument("--timeout", type=int, default=90, help="seconds a cell may take")
    parser.add_argument("--kernel", default="python3", help="the kernel spec to run it in")
    parser.add_argument("--keep", type=Path, help="write the executed notebook here")
    args = parser.parse_args(argv)
    notebook = nbformat.read(args.notebook, as_version=4)
    folder = args.cwd or args.notebook.parent
    began = time.perf_counter()
    NotebookClient(
        notebook, timeout=args.timeout, kernel_name=args.kernel, resources={"metadata": {"path": str(folder)}}
    ).execute()
    if args.keep is not None:
        nbformat.write(notebook, args.keep)
    print(f"{time.perf_counter() - began:.1f}")


if __name__ == "__main__":
    main()
