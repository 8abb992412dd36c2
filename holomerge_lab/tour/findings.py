"""Each notebook's predictions and what its numbers say about them, read from an executed notebook.

Why: a reader asked to "predict, then check" gets the answer in a `# What the numbers say` cell that states the
verdict from the values just computed (`analysis.reading`). Collected over the tour, those answers are the tour's
findings: what a teacher quotes (TEACHING.md) and what a change to the code or the shipped results must keep true.
`benchmarks/tour_findings.py` writes them from the notebooks opened from the shipped results, and the test that opens
each notebook that way checks the file still says what the notebook prints.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import nbformat

PROMPT = re.compile(r"(\*\*Predict\b[^*]*\*\*.*?)(?:\n\s*\n|\Z)", re.DOTALL)  # "**Predict, then check.** …"
ANSWER = "# What the numbers say"
FOUND = "## What we found"
LOOKAHEAD = 4  # an answer comes within this many cells of its prompt (tests/test_notebooks.py holds the tour to it)


@dataclass(frozen=True)
class Finding:
    """One prediction prompt (or "What we found") and the text its answering cell printed."""

    prompt: str
    answer: str


def _text(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def printed(cell) -> str:
    """What a code cell wrote to stdout, as a reader sees it under the cell."""
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream"
                   and o.get("name") == "stdout").strip()  # fmt: skip


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _answer_after(cells: list, i: int, head: str) -> str:
    for cell in cells[i + 1 : i + 1 + LOOKAHEAD]:
        if cell["cell_type"] == "code" and _text(cell).lstrip().startswith(head):
            return printed(cell)
    raise ValueError(f"cell {i}: no code cell starting {head!r} within {LOOKAHEAD} cells")


def _found_after(cells: list, i: int) -> str:
    cell = next((c for c in cells[i + 1 : i + 1 + LOOKAHEAD] if c["cell_type"] == "code"), None)
    if cell is None:
        raise ValueError(f"cell {i}: '{FOUND}' has no code cell after it")
    return printed(cell)


def findings(notebook: nbformat.NotebookNode) -> list[Finding]:
    """Every prediction prompt of an executed notebook with its answer, in order, then its "What we found"."""
    cells = notebook["cells"]
    found = []
    for i, cell in enumerate(cells):
        if cell["cell_type"] != "markdown":
            continue
        text = _text(cell)
        for prompt in PROMPT.findall(text):
            found.append(Finding(_one_line(prompt), _answer_after(cells, i, ANSWER)))
        if text.lstrip().startswith(FOUND):
            found.append(Finding("What we found", _found_after(cells, i)))
    return found


def to_markdown(title: str, found: list[Finding]) -> str:
    """One notebook's section of benchmarks/tour_findings.md: each prompt quoted, its answer as printed."""
    lines = [f"## {title}", ""]
    for f in found:
        lines += [f"**{f.prompt}**" if f.prompt == "What we found" else f"> {f.prompt}", "",
                  "```text", f.answer or "(the cell printed nothing)", "```", ""]  # fmt: skip
    return "\n".join(lines)


def sections(markdown: str) -> dict[str, str]:
    """benchmarks/tour_findings.md split into its notebook sections (title -> the section as `to_markdown` writes
    it), so a test can compare one notebook's section with what that notebook prints now."""
    parts = re.split(r"(?m)^(?=## )", markdown)
    return {p.splitlines()[0][3:].strip(): p.rstrip("\n") for p in parts if p.startswith("## ")}
