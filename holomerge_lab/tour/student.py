"""Student copies of the tour: each notebook with its worked solutions taken out and everything else as committed.

    python -m holomerge_lab.tour.student [--out build/students] [--notebooks 00 01 ...]

Each notebook's worked solutions sit in one `<details>` block, opened by SOLUTIONS, at the end of its exercises
cell. A student copy drops that block (and a cell it would leave empty); the exercises, the "predict, then check"
prompts and every other cell stay byte for byte. The copies are generated, never kept by hand, so the committed
notebooks stay the one source. They are written only into a folder this module created (marked by MARKER),
never into notebooks/.
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Sequence
from pathlib import Path

import nbformat

from .output_folder import replace_folder

ROOT = Path(__file__).parents[2]  # the repository
NOTEBOOKS = ROOT / "notebooks"
SOLUTIONS = "<details><summary>Worked solutions (open after trying)</summary>"
CLOSE = "</details>"
MARKER = ".holomerge-students"  # a folder holding this file was written by this module and may be replaced


def without_solutions(source: str) -> str:
    """`source` with every worked-solutions block removed, text before and after it kept as it was. A block
    without its closing tag, or with another `<details>` inside, is an error: guessing its end could leak part
    of the solutions or cut an exercise."""
    while SOLUTIONS in source:
        start = source.index(SOLUTIONS)
        end = source.find(CLOSE, start)
        if end < 0:
            raise ValueError(f"a worked-solutions block without its closing {CLOSE}")
        if "<details" in source[start + len(SOLUTIONS) : end]:
            raise ValueError("a <details> block inside the worked solutions: its end is ambiguous")
        before, after = source[:start].rstrip(), source[end + len(CLOSE) :].lstrip()
        source = before + "\n\n" + after if before and after else before or after
    return source


def has_solutions(cell: nbformat.NotebookNode) -> bool:
    return cell.cell_type == "markdown" and SOLUTIONS in cell.source


def student_copy(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A new notebook: `notebook` without its worked solutions (the input is left as it was)."""
    student = copy.deepcopy(notebook)
    cells = []
    for cell in student.cells:
        if has_solutions(cell):
            cell.source = without_solutions(cell.source)
            if not cell.source.strip():
                continue
        cells.append(cell)
    student.cells = cells
    return student


def write_students(
    out: Path, names: Sequence[str] = (), notebooks: Path = NOTEBOOKS
) -> list[Path]:  # fmt: skip
    """Write the student copy of each chosen notebook into `out` (replacing a folder this module wrote before)."""
    if out.resolve() == notebooks.resolve() or notebooks.resolve() in out.resolve().parents:
        raise SystemExit(
            f"{out} is inside {notebooks}: student copies never go next to the notebooks they come from"
        )
    paths = sorted(notebooks.glob("[0-9][0-9]_*.ipynb"))
    chosen = [p for p in paths if not names or p.name[:2] in names]
    if not chosen:
        raise SystemExit(f"no notebook matches {list(names)}; choose among {[p.name[:2] for p in paths]}")
    replace_folder(out, MARKER, "student-copies", "python -m holomerge_lab.tour.student")
    written = []
    for path in chosen:
        student = student_copy(nbformat.read(path, as_version=4))
        nbformat.validate(student)
        nbformat.write(student, out / path.name)
        written.append(out / path.name)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m holomerge_lab.tour.student", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "students", help="the copies' folder")
    parser.add_argument(
        "--notebooks", nargs="*", default=[], help="notebook prefixes, e.g. 00 01 (default: all)"
    )
    args = parser.parse_args(argv)
    written = write_students(args.out, args.notebooks)
    print(f"student copies: {len(written)} notebooks in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
