"""The README's badges, every notebook's badges and its Colab clone line follow pyproject's one address; every
relative link of the README and the docs/ pages leads to a file (or a page `make book` writes)."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
_spec = importlib.util.spec_from_file_location("sync_links", ROOT / "scripts" / "sync_links.py")
sync_links = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sync_links)


def test_readme_and_notebooks_agree_with_pyproject():
    assert sync_links.repository() == "https://github.com/holomerge-lab/holomerge_lab"
    assert sync_links.problems() == []


def copy_of_the_repository(tmp_path: Path) -> Path:
    for name in ("README.md", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    return tmp_path


def test_a_moved_repository_is_caught_then_rewritten_everywhere(tmp_path):
    root = copy_of_the_repository(tmp_path)
    pyproject = root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace("holomerge-lab/holomerge_lab", "someone-else/hml"))
    notebooks = sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    found = sync_links.problems(root)
    assert len([p for p in found if "out of step" in p]) == 1 + len(notebooks)  # README and every notebook
    assert sync_links.main(["--root", str(root)]) == 0
    assert sync_links.problems(root) == []
    readme = (root / "README.md").read_text()
    assert "holomerge-lab/holomerge_lab" not in readme
    assert "colab.research.google.com/github/someone-else/hml/blob/main/notebooks/00_tour.ipynb" in readme
    assert "mybinder.org/v2/gh/someone-else/hml/main?labpath=notebooks/00_tour.ipynb" in readme
    for path in notebooks:
        text = path.read_text()
        assert "holomerge-lab/holomerge_lab" not in text, path.name
        assert text == json.dumps(json.loads(text), indent=1, ensure_ascii=False) + "\n"  # the layout is kept
        code = next(c for c in json.loads(text)["cells"] if c["cell_type"] == "code")
        assert "    !git clone -q --depth 1 https://github.com/someone-else/hml hml\n" in code["source"]
        assert any(line.startswith("    !pip install -q ./hml ") for line in code["source"])
    # Only the links changed: every cell that holds none (the badges and the Colab install do) is as committed.
    for path in notebooks:
        mine, theirs = (json.loads(p.read_text())["cells"] for p in (path, ROOT / "notebooks" / path.name))
        assert len(mine) == len(theirs)
        for a, b in zip(mine, theirs, strict=True):
            if "holomerge-lab/holomerge_lab" not in "".join(b["source"]):
                assert a["source"] == b["source"], path.name


def test_a_badge_pointing_elsewhere_or_a_missing_install_block_is_reported(tmp_path):
    root = copy_of_the_repository(tmp_path)
    path = root / "notebooks" / "06_ablation_lab.ipynb"
    notebook = json.loads(path.read_text())
    code = next(c for c in notebook["cells"] if c["cell_type"] == "code")
    code["source"] = [line for line in code["source"] if "!" not in line and "google.colab" not in line]
    path.write_text(sync_links.dump(notebook))
    found = sync_links.problems(root)
    assert "06_ablation_lab.ipynb: its first code cell lacks the Colab install block for " \
           "https://github.com/holomerge-lab/holomerge_lab" in found  # fmt: skip
    readme = root / "README.md"
    readme.write_text(readme.read_text().replace("?labpath=notebooks/00_tour.ipynb", "?labpath=notebooks/04.ipynb"))
    assert any(p.startswith("README.md: no badge https://mybinder.org/badge_logo.svg") for p in sync_links.problems(root))


# --- every relative link of the README and the docs/ pages leads somewhere (issue 29) ---
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)\)")  # [text](target) and ![alt](target), [![..](..)](..) too
BOOK = "build/book/"  # made by `make book`, never committed: its pages are checked by name instead


def heading_anchors(markdown: str) -> set[str]:
    """GitHub's anchors for a page's headings: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"```.*?```", "", markdown, flags=re.S)
    titles = re.findall(r"^#{1,6} (.+?)\s*$", text, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-") for title in titles}


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """Each relative link of `page` (a markdown file under `root`) whose file, or heading anchor, does not exist;
    links into build/book/ must name a page `make book` writes."""
    from holomerge_lab.tour import book

    notebooks = sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    book_pages = {"index.html", "teaching.html"} | {
        book.Page(p.stem, "", "", "", "", 0).file for p in notebooks
    }  # fmt: skip
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("//"):
            continue  # an address, not a file of the repository
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page.resolve()
        relative = resolved.relative_to(root.resolve()).as_posix() if resolved.is_relative_to(root.resolve()) else None
        if relative is None:
            broken.append(f"{target}: outside the repository")
        elif relative.startswith(BOOK):
            if relative.removeprefix(BOOK) not in book_pages:
                broken.append(f"{target}: `make book` writes no such page")
        elif not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in heading_anchors(resolved.read_text()):
            broken.append(f"{target}: no heading #{anchor} in {relative}")
    return broken


PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page):
    assert broken_links(page) == []


def test_the_readme_links_every_notebook_its_book_page_and_the_docs():
    text = (ROOT / "README.md").read_text()
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        assert f"](notebooks/{path.name})" in text and f"](build/book/{path.stem}.html)" in text, path.name
    for name in ("TEACHING.md", "docs/results.md", "docs/architecture.md", "docs/method.md",
                 "docs/command_line.md", "docs/colab_and_binder.md", "docs/notebooks.md", "benchmarks/RESULTS.md"):
        assert f"]({name}" in text, name  # fmt: skip
    assert len(text.splitlines()) < 150, "the README is the front door: move detail to a page of docs/"


def test_a_broken_link_is_reported(tmp_path):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "00_tour.ipynb").write_text("{}")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A page\n\n## Some section\n")
    page = tmp_path / "README.md"
    page.write_text(
        "[ok](docs/a.md#some-section) [gone](docs/b.md) [anchor](docs/a.md#nowhere) [book](build/book/00_tour.html)\n"
        "[no page](build/book/01_x.html) [web](https://example.org/x.md) ![pic](docs/a.svg)\n"
        "```\n[in code](not/checked.md)\n```\n"
    )
    assert broken_links(page, tmp_path) == [
        "docs/b.md: no such file",
        "docs/a.md#nowhere: no heading #nowhere in docs/a.md",
        "build/book/01_x.html: `make book` writes no such page",
        "docs/a.svg: no such file",
    ]
