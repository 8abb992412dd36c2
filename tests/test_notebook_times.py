"""The run times the notebooks state are the measured ones, for the code they now hold.

benchmarks/notebook_times.py runs every notebook in normal mode and `--stamp` writes the times into them; here
nothing runs: the stamps must equal what the measurement says, and the code must be the code that was timed.
"""

import copy
import json
import sys
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import notebook_times  # noqa: E402

TIMES = json.loads((Path(__file__).parent.parent / "benchmarks" / "notebook_times.json").read_text())[
    "notebooks"
]
TOUR = [
    p
    for p in sorted(notebook_times.NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if p.name[:2] not in notebook_times.GPU_ONLY
]
RERUN = (
    "rerun `python benchmarks/notebook_times.py {0}` and then `python benchmarks/notebook_times.py --stamp`"
)


@pytest.mark.parametrize("path", TOUR, ids=lambda p: p.stem)
def test_every_notebook_ran_to_the_end_in_normal_mode(path):
    entry = TIMES.get(path.stem)
    assert entry is not None, f"{path.name} was never timed: " + RERUN.format(path.name[:2])
    assert entry["completed"], f"{path.name} failed in normal mode:\n{entry['error']}"


@pytest.mark.parametrize("path", TOUR, ids=lambda p: p.stem)
def test_the_stated_times_are_the_measured_ones_for_this_code(path):
    entry = TIMES[path.stem]
    notebook = nbformat.read(path, as_version=4)
    assert notebook_times.code_digest(notebook) == entry["code_sha256"], (
        f"{path.name}'s code changed since its run time was measured: " + RERUN.format(path.name[:2])
    )
    live = entry.get("live")
    assert live and live["code_sha256"] == entry["code_sha256"], (
        f"{path.name}: its live time is from other code than its shipped one: `make results`, then " + RERUN.format(
            path.name[:2]
        )
    )
    assert notebook_times.stamped(copy.deepcopy(notebook), path.stem, entry) == notebook, (
        f"{path.name} does not state its measured times: run `python benchmarks/notebook_times.py --stamp`"
    )


def test_stamp_states_the_time_and_marks_only_the_slow_cells():
    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("# 99 · A title\n\n**Question.** Why?"),
            nbformat.v4.new_code_cell("fast()"),
            nbformat.v4.new_code_cell("slow()"),
        ]
    )
    entry = {
        "seconds": 150.0,
        "machine": {"date": "2026-12-02T05:00:00"},
        "cells": [{"index": 1, "seconds": 1.0}, {"index": 2, "seconds": 42.0}],
    }
    once = notebook_times.stamped(copy.deepcopy(notebook), "99_a", entry)
    assert once.cells[0].source.splitlines()[2].startswith("**Run time.** About 2 min live, top to bottom")
    assert once.cells[1].source == "fast()"
    assert once.cells[2].source == "# ≈ 42 s live on 2 cores (benchmarks/notebook_times.json)\nslow()"
    assert (
        notebook_times.stamped(copy.deepcopy(once), "99_a", entry) == once
    )  # stamping again changes nothing
    assert notebook_times.code_digest(once) == notebook_times.code_digest(notebook)
    shipped = dict(entry, seconds=12.0, cells=[{"index": 1, "seconds": 1.0}, {"index": 2, "seconds": 0.4}])
    shipped["live"] = {"seconds": 150.0, "cells": entry["cells"]}
    twice = notebook_times.stamped(copy.deepcopy(once), "99_a", shipped)
    assert twice.cells[0].source.splitlines()[2].startswith("**Run time.** About 12 s from the shipped results, as a first-time")
    assert "and 2 min live" in twice.cells[0].source
    assert twice.cells[2].source == (
        "# ≈ 42 s live on 2 cores, under 1 s from the shipped results (benchmarks/notebook_times.json)\nslow()"
    )
    assert notebook_times.code_digest(twice) == notebook_times.code_digest(notebook)


def test_the_notebooks_page_quotes_the_measured_range_and_total():
    """docs/notebooks.md (the README's page on the notebooks) quotes their range and total, both ways."""
    page = " ".join((Path(__file__).parent.parent / "docs" / "notebooks.md").read_text().split())
    d = notebook_times.duration
    for seconds, how in (
        ([TIMES[p.stem]["seconds"] for p in TOUR], "from the shipped results"),
        ([TIMES[p.stem]["live"]["seconds"] for p in TOUR], "live"),
    ):
        quoted = f"{how} in {d(min(seconds))} to {d(max(seconds))} ({d(sum(seconds))} for 00–07 and 09 in a row)"
        assert quoted in page, quoted
