"""Student copies: the worked solutions gone, every other cell as committed, valid notebooks that still run."""

import nbformat
import pytest
from test_notebooks import GPU_ONLY, NOTEBOOKS, execute_fast

from holomerge_lab.tour import book, student


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    out = tmp_path_factory.mktemp("students") / "students"
    written = student.write_students(out)
    return {p.name: p for p in written}


def test_every_notebook_with_exercises_has_one_solutions_block():
    """The generator finds the solutions by their summary line: a renamed one would ship them to students."""
    for path in NOTEBOOKS:
        text = path.read_text()
        expected = 0 if path.name[:2] in GPU_ONLY else 1  # 08 is a recipe, without exercises' solutions
        assert text.count(student.SOLUTIONS) == expected == text.count("<details>"), path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_student_copy_drops_the_solutions_and_nothing_else(path, copies):
    original = nbformat.read(path, as_version=4)
    copy = nbformat.read(copies[path.name], as_version=4)
    nbformat.validate(copy)
    assert copy.metadata == original.metadata and len(copy.cells) == len(original.cells)
    for kept, cell in zip(copy.cells, original.cells, strict=True):
        assert student.SOLUTIONS not in kept.source and "Worked solutions" not in kept.source
        if student.has_solutions(cell):
            exercises = cell.source[: cell.source.index(student.SOLUTIONS)].rstrip()
            assert kept.source == exercises and exercises.startswith("## Exercises")
            rest = lambda c: {k: v for k, v in c.items() if k != "source"}  # noqa: E731
            assert rest(kept) == rest(cell)
        else:
            assert kept == cell
    prompts = sum(c.source.count("Predict") for c in original.cells)
    assert sum(c.source.count("Predict") for c in copy.cells) == prompts


def test_text_around_a_block_is_kept():
    block = f"{student.SOLUTIONS}\n\n1. the answer\n</details>"
    assert student.without_solutions(f"## Exercises\n\n1. try\n\n{block}\n") == "## Exercises\n\n1. try"
    assert student.without_solutions(f"before\n\n{block}\n\nafter") == "before\n\nafter"
    assert student.without_solutions(block) == ""
    with pytest.raises(ValueError, match="closing"):
        student.without_solutions(f"1. try\n{student.SOLUTIONS}\n1. the answer")
    with pytest.raises(ValueError, match="ambiguous"):
        student.without_solutions(f"{student.SOLUTIONS}<details><summary>hint</summary>x</details></details>")


def test_a_cell_of_solutions_alone_is_dropped():
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_markdown_cell("## Exercises\n\n1. try"),
        nbformat.v4.new_markdown_cell(f"{student.SOLUTIONS}\n\n1. the answer\n</details>"),
        nbformat.v4.new_code_cell("print(1)"),
    ]
    copy = student.student_copy(notebook)
    assert [c.source for c in copy.cells] == ["## Exercises\n\n1. try", "print(1)"]
    assert len(notebook.cells) == 3  # the original is left as it was


def test_refuses_notebooks_and_folders_it_did_not_write(tmp_path):
    with pytest.raises(SystemExit, match="inside"):
        student.write_students(student.NOTEBOOKS)
    with pytest.raises(SystemExit, match="inside"):
        student.write_students(student.NOTEBOOKS / "students")
    assert not (student.NOTEBOOKS / "students").exists()
    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "thesis.tex").write_text("keep me")
    with pytest.raises(SystemExit, match="not a student-copies folder"):
        student.main(["--out", str(precious)])
    assert sorted(p.name for p in precious.iterdir()) == ["thesis.tex"]
    with pytest.raises(SystemExit, match="not a student-copies folder"):  # nor a book, whose marker differs
        book.clear_output_folder(tmp_path / "book")
        student.write_students(tmp_path / "book")
    own = tmp_path / "students"
    assert student.main(["--out", str(own), "--notebooks", "00"]) == 0
    (own / "stale.ipynb").write_text("{}")
    assert student.main(["--out", str(own), "--notebooks", "00", "01"]) == 0
    expected = [student.MARKER, "00_tour.ipynb", "01_tangent_space.ipynb"]  # the stale file is gone
    assert sorted(p.name for p in own.iterdir()) == expected


def test_book_links_the_student_copies_and_the_teachers_page(tmp_path):
    source, out = tmp_path / "executed", tmp_path / "book"
    source.mkdir()
    nbformat.write(nbformat.read(book.NOTEBOOKS / "00_tour.ipynb", as_version=4), source / "00_tour.ipynb")
    book.build(out, ["00"], source=source, times=tmp_path / "none.json")
    front = (out / "index.html").read_text()
    assert 'href="teaching.html"' in front and (out / "teaching.html").is_file()
    teaching = (out / "teaching.html").read_text()
    assert "<table>" in teaching and "45-minute" in teaching  # the plan's tables, rendered
    assert 'href="00_tour.student.ipynb"' in (out / "00_tour.html").read_text()
    copy = nbformat.read(out / "00_tour.student.ipynb", as_version=4)
    assert student.SOLUTIONS not in "".join(c.source for c in copy.cells)
    assert all(c.get("outputs", []) == [] for c in copy.cells)  # from the committed notebook, not the run
    without = tmp_path / "book without a teacher's page"
    book.build(without, ["00"], source=source, times=tmp_path / "none.json", teaching=tmp_path / "none.md")
    assert "teaching.html" not in (without / "index.html").read_text()


@pytest.mark.notebooks
def test_student_copy_of_the_tour_runs_headless_in_fast_mode(copies, tmp_path):
    execute_fast(copies["00_tour.ipynb"], tmp_path)
