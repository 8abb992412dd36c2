"""Run one notebook headless with nbclient: the child process the tests and benchmarks start, each under a
wall-clock limit of its own (nbclient's per-cell timeout alone does not bound a stalled run).

    python -m holomerge_lab.run_notebook NOTEBOOK [--cwd DIR] [--timeout S] [--kernel NAME]

Prints the seconds the run took; a failing cell exits non-zero with nbclient's error.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m holomerge_lab.run_notebook")
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--cwd", type=Path, help="the kernel's working folder (default: the notebook's)")
    parser.add_argument("--timeout", type=int, default=90, help="seconds a cell may take")
    parser.add_argument("--kernel", default="python3", help="the kernel spec to run it in")
    args = parser.parse_args(argv)
    notebook = nbformat.read(args.notebook, as_version=4)
    folder = args.cwd or args.notebook.parent
    began = time.perf_counter()
    NotebookClient(
        notebook, timeout=args.timeout, kernel_name=args.kernel, resources={"metadata": {"path": str(folder)}}
    ).execute()
    print(f"{time.perf_counter() - began:.1f}")


if __name__ == "__main__":
    main()
