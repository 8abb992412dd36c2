"""The README's badges, every notebook's badges and its Colab clone line follow pyproject's one address."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

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
