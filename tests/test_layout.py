"""The package's layout is its architecture (docs/architecture.md): floors by role, each importing only its own
floor or those below, small modules, and no reference to a document the repository does not hold.

The imports are read from the source with `ast` (those inside functions too), so a lazy import that runs upward
fails here as surely as one at the top of a file.
"""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PACKAGE = ROOT / "holomerge_lab"
# bottom to top; a module may import its own floor and any below it
FLOORS = ("errors", "data", "method", "models", "experiment", "analysis", "tour", "cli")
TOP_LEVEL = {"__init__": "errors", "errors": "errors", "files": "errors", "cli": "cli", "cli_output": "cli", "cli_parser": "cli"}
MAX_LINES = 500
WIDGET_LIBRARIES = ("plotly", "ipywidgets")  # what the reader touches: tour/ and above only


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def floor(module: str) -> str:
    """The floor of a dotted module name of the package."""
    parts = module.split(".")[1:]
    if not parts:
        return "errors"  # the package itself: its __init__ holds only the version
    if parts[0] in FLOORS[1:-1]:
        return parts[0]
    return TOP_LEVEL.get(parts[0], "errors")  # else a name of the package itself (its version)


def imported(module: str, path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import of `module`'s file."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.append((node.lineno, target))
            if node.module is None:  # `from . import x`: x is a module of that package
                found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
    return found


def test_every_module_sits_on_a_known_floor():
    top = {p.stem for p in PACKAGE.glob("*.py")}
    assert top <= set(TOP_LEVEL), f"a module outside the floors: {sorted(top - set(TOP_LEVEL))}"
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders <= set(FLOORS), f"a folder that is not a floor: {sorted(folders - set(FLOORS))}"


def test_no_import_runs_upward():
    upward = []
    for module, path in modules().items():
        mine = FLOORS.index(floor(module))
        for line, target in imported(module, path):
            if target.split(".")[0] == "holomerge_lab" and FLOORS.index(floor(target)) > mine:
                upward.append(f"{path.relative_to(ROOT)}:{line} ({floor(module)}) imports {target} ({floor(target)})")
    assert not upward, "imports that run upward between floors:\n" + "\n".join(upward)


def test_only_the_tour_and_above_draw():
    drawing = []
    for module, path in modules().items():
        if FLOORS.index(floor(module)) >= FLOORS.index("tour"):
            continue
        for line, target in imported(module, path):
            if target.split(".")[0] in WIDGET_LIBRARIES:
                drawing.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert not drawing, "\n".join(drawing)


def test_the_checker_sees_an_upward_import(tmp_path):
    """The test above can fail: a method module importing the experiment floor, lazily, is found."""
    path = tmp_path / "merging.py"
    path.write_text("def f():\n    from ..experiment.config import RunConfig\n    from . import fisher\n")
    found = imported("holomerge_lab.method.merging", path)
    assert (2, "holomerge_lab.experiment.config") in found and (3, "holomerge_lab.method.fisher") in found
    assert FLOORS.index(floor("holomerge_lab.experiment.config")) > FLOORS.index(floor("holomerge_lab.method"))


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_is_over_the_limit(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines (at most {MAX_LINES}): split it by role"


def test_every_document_the_package_cites_is_in_the_repository():
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for line, text in enumerate(path.read_text().splitlines(), 1):
            for name in re.findall(r"[\w./-]+\.md\b", text):
                if not any((base / name).exists() for base in (ROOT, ROOT / "docs", path.parent)):
                    missing.append(f"{path.relative_to(ROOT)}:{line} cites {name}")
    assert not missing, "\n".join(missing)
