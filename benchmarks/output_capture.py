"""Why the panels set an Output widget's contents instead of capturing into it: one notebook each way, under nbclient.

    python benchmarks/output_capture.py [--runs 5] [--cells 40] [--out benchmarks/output_capture.json]

Each notebook draws `--cells` plotly figures of 3000 points, each in a fresh `ipywidgets.Output`: by capture
(`with out: out.clear_output(wait=True); figure.show()`, what the notebooks did) or set directly
(`widgets.show_in(out, figure)`, what they do now). nbclient executes each notebook `--runs` times, as the notebook
tests, Voila and the book do; a cell waits at most CELL_TIMEOUT seconds. Wall time and outcome of every run.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from holomerge_lab.analysis.bench import machine

CELL_TIMEOUT = 60
RUN_LIMIT_S = 180  # a run set directly takes seconds
SETUP = (
    "import ipywidgets as W, numpy as np, plotly.graph_objects as go\n"
    "from IPython.display import display\n"
    "from holomerge_lab import viz, widgets\n"
    "viz.setup_renderer()"
)
DRAW = {
    "capture": "out = W.Output()\ndisplay(out)\nwith out:\n    out.clear_output(wait=True)\n    {figure}.show()",
    "set directly": "out = W.Output()\ndisplay(out)\nwidgets.show_in(out, {figure})",
}
FIGURE = "go.Figure(go.Scatter(y=np.random.default_rng({i}).random(3000)))"


def notebook(way: str, cells: int):
    code = [DRAW[way].format(figure=FIGURE.format(i=i)) for i in range(cells)]
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in [SETUP, *code]])


def one_run(way: str, cells: int, folder: Path) -> dict:
    """One execution in a process of its own, killed after RUN_LIMIT_S: a stalled run may never end by itself."""
    path = folder / f"{way.replace(' ', '-')}.ipynb"
    nbformat.write(notebook(way, cells), path)
    began = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "holomerge_lab.tour.run_notebook", str(path), "--timeout", str(CELL_TIMEOUT)], start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        _, err = process.communicate(timeout=RUN_LIMIT_S)
        outcome = "ran" if process.returncode == 0 else err.strip().splitlines()[-1][:120]
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        outcome = f"stalled: killed after {RUN_LIMIT_S} s"
    return {"seconds": time.perf_counter() - began, "outcome": outcome}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cells", type=int, default=40)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "output_capture.json")
    args = parser.parse_args()
    record = {
        "command": "python " + " ".join(sys.argv),
        "machine": machine(),
        "cells": args.cells,
        "runs": {},
    }
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for r in range(args.runs):  # interleaved: the machine's noise falls on both alike
            for way in DRAW:
                run = one_run(way, args.cells, folder)
                record["runs"].setdefault(way, []).append(run)
                print(f"run {r}: {way:>12}: {run['seconds']:6.1f} s {run['outcome']}", flush=True)
    record["load_average_after"] = os.getloadavg()
    args.out.write_text(json.dumps(record, indent=1) + "\n")
