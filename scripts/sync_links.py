"""Keep the Colab/Binder badges and the Colab clone line in step with the one repository address.

The address lives in pyproject.toml (`[project.urls] Repository`). The README's badges, every notebook's badges
(in its first cell) and the Colab install block of every notebook's first code cell are written from it:

    python scripts/sync_links.py          # rewrite README.md and notebooks/*.ipynb where they differ
    python scripts/sync_links.py --check  # list what is out of step, exit 1 if anything is (tests/test_links.py)

A repository that moves is one edit to pyproject.toml and one run of this script.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
BRANCH = "main"
GPU_ONLY = ("08",)  # notebooks that Binder's CPU cannot run: a Colab badge only
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
BINDER_BADGE = "https://mybinder.org/badge_logo.svg"

_COLAB = re.compile(r"https://colab\.research\.google\.com/github/[^/\s)]+/[^/\s)]+/blob/[^/\s)]+/notebooks/([^\s)]+)")
_BINDER = re.compile(
    r"https://mybinder\.org/v2/gh/[^/\s)]+/[^/\s)]+/[^?\s)]+\?(?:labpath|urlpath)=(?:lab/tree/)?notebooks/([^\s)]+)"
)
_INSTALL = re.compile(r'^if "google\.colab" in sys\.modules:.*\n(?:[ \t]+!.*(?:\n|$))+', re.MULTILINE)


def repository(root: Path = ROOT) -> str:
    """The repository's address, `https://github.com/OWNER/NAME`, from pyproject.toml."""
    urls = tomllib.loads((root / "pyproject.toml").read_text()).get("project", {}).get("urls", {})
    url = urls.get("Repository", "")
    if not re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url):
        raise SystemExit(f"pyproject.toml: set [project.urls] Repository = \"https://github.com/OWNER/NAME\", not {url!r}")
    return url


def slug(url: str) -> str:
    return url.removeprefix("https://github.com/")


def colab_url(url: str, notebook: str) -> str:
    return f"https://colab.research.google.com/github/{slug(url)}/blob/{BRANCH}/notebooks/{notebook}"


def binder_url(url: str, notebook: str) -> str:
    return f"https://mybinder.org/v2/gh/{slug(url)}/{BRANCH}?labpath=notebooks/{notebook}"


def install_block(url: str) -> str:
    """The Colab install lines of every notebook: the repository, whose one `pip install` brings the toolkit, its
    dependencies and its data loaders (animal-mnist's data come from its wheel at first use, never TensorFlow)."""
    name = url.rsplit("/", 1)[-1]
    return (
        'if "google.colab" in sys.modules:  # Colab only; elsewhere the toolkit is installed already\n'
        f"    !git clone -q --depth 1 {url} {name}\n"
        f"    !pip install -q ./{name}  # the toolkit, its dependencies and its data loaders: one install\n"
    )


def sync_markdown(text: str, url: str, notebook: str | None = None) -> str:
    """Badges rewritten to `url`; in a notebook (`notebook` = its file name) they point to the notebook itself."""
    text = _COLAB.sub(lambda m: colab_url(url, notebook or m.group(1)), text)
    return _BINDER.sub(lambda m: binder_url(url, notebook or m.group(1)), text)


def sync_code(text: str, url: str) -> str:
    """The Colab install block replaced by the canonical one (the rest of the cell kept)."""
    block = install_block(url)
    return _INSTALL.sub(lambda m: block if m.group(0).endswith("\n") else block.rstrip("\n"), text)


def first_cells(notebook: dict) -> tuple[dict, dict]:
    """The first markdown cell (badges) and the first code cell (the install block)."""
    markdown = next(c for c in notebook["cells"] if c["cell_type"] == "markdown")
    code = next(c for c in notebook["cells"] if c["cell_type"] == "code")
    return markdown, code


def dump(notebook: dict) -> str:
    """The notebooks' own JSON layout: indent 1, UTF-8 as is, a trailing newline."""
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"


def _set_source(cell: dict, text: str) -> None:
    cell["source"] = text.splitlines(keepends=True)


def synced(root: Path, url: str) -> dict[Path, str]:
    """Every file the links live in, with the text it should have."""
    out = {root / "README.md": sync_markdown((root / "README.md").read_text(), url)}
    for path in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        notebook = json.loads(path.read_text())
        markdown, code = first_cells(notebook)
        _set_source(markdown, sync_markdown("".join(markdown["source"]), url, path.name))
        _set_source(code, sync_code("".join(code["source"]), url))
        out[path] = dump(notebook)
    return out


def problems(root: Path = ROOT) -> list[str]:
    """What disagrees with pyproject's address, or is missing; empty when everything is in step."""
    url = repository(root)
    found = [f"{p.relative_to(root)}: out of step with {url} (run scripts/sync_links.py)"
             for p, text in synced(root, url).items() if p.read_text() != text]  # fmt: skip
    readme = (root / "README.md").read_text()
    for badge, link in ((COLAB_BADGE, colab_url(url, "00_tour.ipynb")), (BINDER_BADGE, binder_url(url, "00_tour.ipynb"))):
        if f"({badge})]({link})" not in readme:
            found.append(f"README.md: no badge {badge} linking to {link}")
    for path in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        markdown, code = first_cells(json.loads(path.read_text()))
        wanted = [(COLAB_BADGE, colab_url(url, path.name))]
        if path.name[:2] not in GPU_ONLY:
            wanted.append((BINDER_BADGE, binder_url(url, path.name)))
        for badge, link in wanted:
            if f"({badge})]({link})" not in "".join(markdown["source"]):
                found.append(f"{path.name}: its first cell has no badge {badge} linking to {link}")
        if install_block(url) not in "".join(code["source"]) + "\n":
            found.append(f"{path.name}: its first code cell lacks the Colab install block for {url}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report; exit 1 if anything is out of step")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.check:
        for path, text in synced(args.root, repository(args.root)).items():
            if path.read_text() != text:
                path.write_text(text)
                print(f"rewrote {path.relative_to(args.root)}")
    found = problems(args.root)
    print("\n".join(found) or f"README.md and notebooks/ agree with {repository(args.root)}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
