"""Each notebook as a reader runs it: normal mode (fast mode off), top to bottom, in a fresh kernel, timed per cell.

    python benchmarks/notebook_times.py [NAMES ...] [--keep DIR] [--out benchmarks/notebook_times.json]
    python benchmarks/notebook_times.py --stamp     # write the measured times into the notebooks

A reader's run draws its heavy figures from the shipped results (holomerge_lab/tour/shipped.py); that is what is timed
here. The live times (every value recomputed) are those of the run that made the bundle, read from its files
(`python -m holomerge_lab.tour.shipped` times every cell of the notebooks it runs live).

NAMES are notebook prefixes (`00 04`); none means every notebook but 08 (GPU only). `--keep DIR` also writes each
executed notebook (with its outputs) into DIR. The JSON holds, per notebook, the wall time, whether it ran to the
end (and the error if not), its slowest cells, the live times and what the disk cache (`HOLOMERGE_CACHE`) held when
it started: a first-time reader starts from an empty one and fills it notebook by notebook. A rerun of some
notebooks keeps the others' entries.

`--stamp` writes what was measured where a reader sees it before running anything: a "Run time" line in each
notebook's first cell, and a first-line comment in every cell that took longer than SLOW_CELL_S live. The entry
keeps a digest of the code it timed; tests/test_notebook_times.py fails when a notebook's code has changed since.
"""

import argparse
import json
import os
import sys
from pathlib import Path

import nbformat

from holomerge_lab.analysis.bench import machine
from holomerge_lab.data import cache_dir
from holomerge_lab.tour import book, shipped
from holomerge_lab.tour.run_notebook import SLOW_COMMENT, cell_times, code_digest

NOTEBOOKS = Path(__file__).parent.parent / "notebooks"
GPU_ONLY = ("08",)
SLOW_CELL_S = 20  # a cell slower than this says so in its first line
RUN_TIME = "**Run time.**"  # how the first cell's line starts


def duration(seconds: float) -> str:
    if seconds < 0.5:
        return "under 1 s"
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def run_time_line(entry: dict, name: str) -> str:
    when, live = entry["machine"]["date"][:10], entry.get("live")
    timed = f"measured {when}: `python benchmarks/notebook_times.py`"
    reader = cache_state(entry)
    if live is None:  # no shipped results: the reader's run is the live one
        return f"{RUN_TIME} About {duration(entry['seconds'])} live, top to bottom on 2 CPU cores, {reader} ({timed})."
    return (
        f"{RUN_TIME} About {duration(entry['seconds'])} from the shipped results, {reader}, and "
        f"{duration(live['seconds'])} live (every value recomputed: `results.live = True`), top to bottom on 2 CPU "
        f"cores ({timed}; live, {_live_cache(live)}: `python -m holomerge_lab.tour.shipped`)."
    )


def _live_cache(live: dict) -> str:
    """The disk cache the live run started from, as the recording noted it (`made_by["cache_empty"]`)."""
    if live.get("cache_empty") is False:
        return "with the disk cache earlier runs filled (trunk features, task models)"
    return "from an empty cache"


def cache_state(entry: dict) -> str:
    """How the disk cache stood when the notebook was timed, in words (the entry's `cache_at_start`)."""
    if not entry.get("cache_at_start"):
        return "as a first-time reader runs the tour in order"
    # timed in order from an empty cache: what the cache held, the notebooks before filled
    if entry.get("cache_at_run_start") == []:
        return "as a first-time reader runs the tour in order from 00 (the disk cache holding what those before filled)"
    return "with the disk cache an earlier run filled (a first-time reader also waits for trunk features)"


def slow_comment(live: float, shipped: float | None) -> str:
    now = f", {duration(shipped)} from the shipped results" if shipped is not None else ""
    return f"# ≈ {duration(live)} live on 2 cores{now} (benchmarks/notebook_times.json)\n"


def stamped(notebook, name: str, entry: dict):
    """The notebook with its measured run time in the first cell and a comment atop every cell slow live."""
    first = notebook["cells"][0]
    lines = "".join(first["source"]).split("\n")
    earlier = [i for i, line in enumerate(lines) if line.startswith(RUN_TIME)]
    for i in earlier[::-1]:  # an earlier stamp goes, with the blank line after it
        del lines[i : i + 2]
    title = next(i for i, line in enumerate(lines) if line.startswith("# "))
    lines[title + 2 : title + 2] = [run_time_line(entry, name), ""]
    first["source"] = "\n".join(lines)
    now = {c["index"]: c["seconds"] for c in entry["cells"]}
    live = entry.get("live")
    slow = {c["index"]: c["seconds"] for c in (live or entry)["cells"] if c["seconds"] > SLOW_CELL_S}
    for i, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] == "code":
            source = SLOW_COMMENT.sub("", "".join(cell["source"]))
            comment = slow_comment(slow[i], now.get(i) if live else None) if i in slow else ""
            cell["source"] = comment + source
    return notebook


def live_times(stem: str) -> dict | None:
    """The live run that made the notebook's shipped values: its seconds, per-cell times and code digest."""
    path = shipped.BUNDLE / f"{stem}.json"
    if not path.is_file():
        return None
    made = shipped.read_file(path).get("made_by", {})
    keys = ("seconds", "cells", "code_sha256", "date", "command", "cache_empty")
    return {k: made.get(k) for k in keys} if "seconds" in made else None


def time_notebook(path: Path, keep: Path | None) -> dict:
    """One notebook in normal mode in a fresh kernel, as the book runs it (`book.execute`), timed per cell, its
    heavy values from the shipped results."""
    notebook = nbformat.read(path, as_version=4)
    digest = code_digest(notebook)  # of the code as it is run
    seconds, error = book.execute(notebook, fast=False)
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, keep / path.name)
    cells = cell_times(notebook)
    slowest = sorted(cells, key=lambda c: -c["seconds"])[:5]
    return {
        "seconds": seconds, "completed": error is None, "error": error, "slowest_cells": slowest, "cells": cells,
        "code_sha256": digest, "live": live_times(path.stem),
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
            print(
                f"{path.name}: {duration(entry['seconds'])}, {len((entry.get('live') or entry)['cells'])} cells timed"
            )
        sys.exit(0)
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    chosen = [p for p in paths if (p.name[:2] in args.names if args.names else p.name[:2] not in GPU_ONLY)]
    if not chosen:
        sys.exit(f"no notebook matches {args.names}; choose among {[p.name[:2] for p in paths]}")
    record = json.loads(args.out.read_text()) if args.out.is_file() else {"notebooks": {}}
    record["machine"] = machine()  # where this invocation ran; each entry keeps its own too

    def cached() -> list[str]:
        return sorted(p.name for p in cache_dir().glob("*")) if cache_dir().is_dir() else []

    at_run_start = cached()
    for path in chosen:
        at_start = cached()
        entry = time_notebook(path, args.keep)
        entry["machine"] = machine()
        entry["cache_at_start"] = at_start  # [] = a first-time reader's cold cache
        entry["cache_at_run_start"] = at_run_start
        record["notebooks"][path.stem] = entry
        record["command"], record["load_average_after"] = (
            "python benchmarks/notebook_times.py",
            os.getloadavg(),
        )
        args.out.write_text(json.dumps(record, indent=1) + "\n")
        state = "ran to the end" if entry["completed"] else "FAILED"
        print(f"{path.name}: {entry['seconds']:.0f} s, {state}", flush=True)
