"""Reading a notebook's predictions and their answers (tour/findings.py), on executed notebooks made here."""

import nbformat
import pytest

from holomerge_lab.tour import findings


def executed(*cells) -> nbformat.NotebookNode:
    """A notebook of (kind, source, printed) cells, as nbclient leaves it."""
    notebook = nbformat.v4.new_notebook()
    for kind, source, out in cells:
        if kind == "markdown":
            notebook.cells.append(nbformat.v4.new_markdown_cell(source))
        else:
            cell = nbformat.v4.new_code_cell(source)
            if out is not None:
                cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=out),
                                nbformat.v4.new_output("stream", name="stderr", text="a progress bar")]
            notebook.cells.append(cell)
    return notebook


def test_each_prompt_gets_the_text_its_answer_printed_and_the_file_round_trips():
    notebook = executed(
        ("markdown", "## A run\n\n**Predict, then check.** Will a be\nhigher than b?\n\nMore prose.", None),
        ("code", "run()", "not the answer"),
        ("code", "# What the numbers say\nprint(reading.difference(a, b))", "a − b = +1.00 points: a is higher\n"),
        ("markdown", "**Predict** first: lower?", None),
        ("code", "# What the numbers say\n", "a − b = −2.00 points\n"),
        ("markdown", "## What we found", None),
        ("code", "print(findings)", "1. a is higher\n2. b is lower\n"),
    )
    found = findings.findings(notebook)
    assert found == [
        findings.Finding("**Predict, then check.** Will a be higher than b?", "a − b = +1.00 points: a is higher"),
        findings.Finding("**Predict** first: lower?", "a − b = −2.00 points"),
        findings.Finding("What we found", "1. a is higher\n2. b is lower"),
    ]
    page = "# header\n\n" + findings.to_markdown("00_x", found) + "\n" + findings.to_markdown("01_y", found[:1])
    back = findings.sections(page)
    assert list(back) == ["00_x", "01_y"]
    assert back["00_x"] == findings.to_markdown("00_x", found).rstrip("\n")
    assert "a is higher" in back["01_y"] and "b is lower" not in back["01_y"]


def test_a_prompt_without_its_answer_is_an_error_not_a_silent_gap():
    notebook = executed(("markdown", "**Predict, then check.** Higher?", None), ("code", "x = 1", ""))
    with pytest.raises(ValueError, match="What the numbers say"):
        findings.findings(notebook)
