"""Each notebook as a reader runs it: normal mode (fast mode off), top to bottom, in a fresh kernel, timed per cell.

    python benchmarks/notebook_times.py [NAMES ...] [--keep DIR] [--out benchmarks/notebook_times.json]
    python benchmarks/notebook_times.py --stamp     # write the measured times into the notebooks

NAMES are notebook prefixes (`00 04`); none means every notebook but 08 (GPU only). `--keep DIR` also writes each
executed notebook (with its outputs) into DIR. The JSON holds, per notebook, the wall time, whether it ran to the
end (and the error if not), its slowest cells and what the disk cache (`HOLOMERGE_CACHE`) held when it started:
a first-time reader starts from an empty one and fills it notebook by notebook. A rerun of some notebooks keeps
the others' entries.

`--stamp` writes what was measured where a reader sees it before running anything: a "Run time" line in each
notebook's first cell, and a first-line comment in every cell that took longer than SLOW_CELL_S. The entry keeps a
digest of the code it timed; tests/test_notebook_times.py fails when a notebook's code has changed since (rerun it).
"""

import argparse
import hashlib
import json
import os
import re
import sys
from datetime import datetime
from pathlib import Path

import nbformat

from holomerge_lab import book
from holomerge_lab.bench import machine
from holomerge_lab.data import cache_dir

NOTEBOOKS = Path(__file__).parent.parent / "notebooks"
GPU_ONLY = ("08",)
SLOW_CELL_S = 20  # a cell slower than this says so in its first line
RUN_TIME = "**Run time.**"  # how the first cell's line starts
SLOW_COMMENT = re.compile(r"^# ≈ .* live on 2 cores \(benchmarks/notebook_times\.json\)\n")


def code_digest(notebook) -> str:
    """A digest of the notebook's code, the stamps left out: what a measured time belongs to."""
    code = [SLOW_COMMENT.sub("", "".join(c["source"])) for c in notebook["cells"] if c["cell_type"] == "code"]
    return hashlib.sha256("\x00".join(code).encode()).hexdigest()


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def run_time_line(entry: dict, name: str) -> str:
    when = entry["machine"]["date"][:10]
    return (
        f"{RUN_TIME} About {duration(entry['seconds'])} live, top to bottom on 2 CPU cores, as a first-time reader "
        f"runs the tour in order (measured {when}: `python benchmarks/notebook_times.py`); a rerun is faster, its "
        "fine-tuned models cached."
    )


def slow_comment(seconds: float) -> str:
    return f"# ≈ {duration(seconds)} live on 2 cores (benchmarks/notebook_times.json)\n"


def stamped(notebook, name: str, entry: dict):
    """The notebook with its measured run time in the first cell and a comment atop every slow cell."""
    first = notebook["cells"][0]
    lines = "".join(first["source"]).split("\n")
    earlier = [i for i, line in enumerate(lines) if line.startswith(RUN_TIME)]
    for i in earlier[::-1]:  # an earlier stamp goes, with the blank line after it
        del lines[i : i + 2]
    title = next(i for i, line in enumerate(lines) if line.startswith("# "))
    lines[title + 2 : title + 2] = [run_time_line(entry, name), ""]
    first["source"] = "\n".join(lines)
    slow = {c["index"]: c["seconds"] for c in entry["slow_cells"]}
    for i, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] == "code":
            source = SLOW_COMMENT.sub("", "".join(cell["source"]))
            cell["source"] = (slow_comment(slow[i]) if i in slow else "") + source
    return notebook


def cell_seconds(cell) -> float | None:
    """A cell's run time from the timestamps nbclient records (execute_input to execute_reply)."""
    timing = cell.get("metadata", {}).get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not (start and end):
        return None
    parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    return (parse(end) - parse(start)).total_seconds()


def time_notebook(path: Path, keep: Path | None) -> dict:
    """One notebook in normal mode in a fresh kernel, as the book runs it (`book.execute`), timed per cell."""
    notebook = nbformat.read(path, as_version=4)
    digest = code_digest(notebook)  # of the code as it is run
    seconds, error = book.execute(notebook, fast=False)
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, keep / path.name)
    cells = [
        {"index": i, "seconds": s, "first_line": "".join(c["source"]).strip().splitlines()[0][:80]}
        for i, c in enumerate(notebook.cells)
        if c.cell_type == "code" and c["source"].strip() and (s := cell_seconds(c)) is not None
    ]
    slowest = sorted(cells, key=lambda c: -c["seconds"])[:5]
    slow = [c for c in cells if c["seconds"] > SLOW_CELL_S]
    return {
        "seconds": seconds, "completed": error is None, "error": error, "slowest_cells": slowest,
        "slow_cells": slow, "code_sha256": digest,
    }  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("names", nargs="*", help="notebook prefixes, e.g. 00 04 (default: all but 08)")
    parser.add_argument("--keep", type=Path, help="also write the executed notebooks into this folder")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "notebook_times.json")
    parser.add_argument("--stamp", action="store_true", help="write the measured times into the notebooks")
    args = parser.parse_args()
    if args.stamp:
        for name, entry in json.loads(args.out.read_text())["notebooks"].items():
            path = NOTEBOOKS / f"{name}.ipynb"
            nbformat.write(stamped(nbformat.read(path, as_version=4), name, entry), path)
            print(f"{path.name}: {duration(entry['seconds'])}, {len(entry['slow_cells'])} slow cells")
        sys.exit(0)
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    chosen = [p for p in paths if (p.name[:2] in args.names if args.names else p.name[:2] not in GPU_ONLY)]
    if not chosen:
        sys.exit(f"no notebook matches {args.names}; choose among {[p.name[:2] for p in paths]}")
    record = json.loads(args.out.read_text()) if args.out.is_file() else {"notebooks": {}}
    record["machine"] = machine()  # where this invocation ran; each entry keeps its own too
    for path in chosen:
        cached = sorted(p.name for p in cache_dir().glob("*")) if cache_dir().is_dir() else []
        entry = time_notebook(path, args.keep)
        entry["machine"], entry["cache_at_start"] = machine(), cached  # [] = a first-time reader's cold cache
        record["notebooks"][path.stem] = entry
        record["command"], record["load_average_after"] = (
            "python benchmarks/notebook_times.py",
            os.getloadavg(),
        )
        args.out.write_text(json.dumps(record, indent=1) + "\n")
        state = "ran to the end" if entry["completed"] else "FAILED"
        print(f"{path.name}: {entry['seconds']:.0f} s, {state}", flush=True)
