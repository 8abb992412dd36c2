"""`make book`: the tour's notebooks, executed and rendered with their outputs, as a static site that opens offline.

    python -m holomerge_lab.tour.book [--out build/book] [--fast | --from DIR] [--notebooks 00 01 ...]

Each notebook is executed (normal mode by default; `--fast` sets HOLOMERGE_FAST=1 and labels every page a
fast-mode preview) or taken already executed from `--from DIR` (e.g. `benchmarks/notebook_times.py --keep DIR`),
turned static (book_outputs.make_static) and rendered by nbconvert's lab template (book_assets). Nothing is
fetched when the book is built or read: plotly.js comes from the installed plotly package and MathJax from
`jupyter-server-mathjax`, both copied under `OUT/assets/`; require.js, the widget manager and mermaid, which the
template loads from CDNs, are left out. The front page gives the reading order, reading times (from the prose) and
run times (from benchmarks/notebook_times.json, where measured).
"""

from __future__ import annotations

import argparse
import html
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import jinja2
import nbformat

from .book_assets import TEMPLATE, copy_assets
from .book_outputs import make_static
from .output_folder import replace_folder
from .student import student_copy

ROOT = Path(__file__).parents[2]  # the repository
NOTEBOOKS = ROOT / "notebooks"
TIMES = ROOT / "benchmarks" / "notebook_times.json"
TEACHING = ROOT / "TEACHING.md"  # the teacher's page, rendered into the book as teaching.html
GPU_ONLY = ("08",)
MARKER = ".holomerge-book"  # a folder holding this file was written by this module and may be replaced
WORDS_PER_MINUTE = 200
# s: a normal-mode cell may train for many minutes on 2 cores; fast-mode cells take seconds, and a cell whose reply
# nbclient sees late (tests/test_notebooks.py) then costs at most this
CELL_TIMEOUT = {"normal": 3600, "fast": 120}
FAST_LABEL = (
    "Fast-mode preview (HOLOMERGE_FAST=1): tiny task subsets and few steps, so the numbers and figures on this "
    "page show what the notebook does, not its results."
)


@dataclass
class Page:
    """One notebook of the book: where its page is, what it is about, how it was made and how long it takes."""

    stem: str
    title: str
    summary: str
    kind: str  # "normal", "fast", "from" or "unexecuted": how its outputs were made
    label: str  # that, said on the page
    words: int
    seconds: float | None = None  # this build's execution time, where it executed the notebook
    failed: str | None = None

    @property
    def file(self) -> str:
        return f"{self.stem}.html"

    @property
    def student_file(self) -> str:
        return f"{self.stem}.student.ipynb"


def reading_words(notebook: nbformat.NotebookNode) -> int:
    """Words a reader reads: the prose and the code, not the outputs."""
    return sum(len(cell.source.split()) for cell in notebook.cells if cell.cell_type in ("markdown", "code"))


def title_and_summary(notebook: nbformat.NotebookNode) -> tuple[str, str]:
    """The first heading, and the paragraph that asks the notebook's question (else the first plain paragraph)."""
    markdown = "\n\n".join(c.source for c in notebook.cells if c.cell_type == "markdown")
    paragraphs = [p.strip() for p in markdown.split("\n\n") if p.strip()]
    title = next((p.lstrip("# ").splitlines()[0] for p in paragraphs if p.startswith("# ")), "")
    plain = [p for p in paragraphs if not p.startswith(("#", "[![", "!["))]
    summary = next((p for p in plain if p.startswith("**Question")), plain[0] if plain else "")
    return title, " ".join(summary.replace("**Question.**", "").split())


@contextmanager
def _environment(fast: bool) -> Iterator[None]:
    """The kernel inherits this process's environment: fast mode on or off for it, offline hub either way."""
    saved = {k: os.environ.get(k) for k in ("HOLOMERGE_FAST", "HF_HUB_OFFLINE")}
    os.environ["HF_HUB_OFFLINE"] = "1"
    if fast:
        os.environ["HOLOMERGE_FAST"] = "1"
    else:
        os.environ.pop("HOLOMERGE_FAST", None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def execute(notebook: nbformat.NotebookNode, fast: bool) -> tuple[float, str | None]:
    """Run a notebook top to bottom in a fresh kernel inside a scratch folder, keeping the widgets' state (the
    panels' tables and figures live there); returns the seconds it took and the error that stopped it, if any."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    began, error = time.perf_counter(), None
    with tempfile.TemporaryDirectory() as scratch, _environment(fast):
        client = NotebookClient(
            notebook, timeout=CELL_TIMEOUT["fast" if fast else "normal"], kernel_name="python3",
            store_widget_state=True, resources={"metadata": {"path": scratch}},
        )  # fmt: skip
        try:
            client.execute()
        except (CellExecutionError, CellTimeoutError, DeadKernelError) as e:  # the page shows how far it got
            error = str(e).strip().splitlines()[-1][:300] if str(e).strip() else type(e).__name__
    return time.perf_counter() - began, error


def prepare_page(path: Path, mode: str, source: Path | None) -> tuple[Page, nbformat.NotebookNode]:
    """Read, execute (or take the executed copy of) one notebook, and describe how its outputs were made."""
    stem = path.stem
    copy = source / path.name if source is not None else None
    if copy is not None and copy.is_file():
        notebook = nbformat.read(copy, as_version=4)
        kind, label = "from", f"Outputs from an earlier run of this notebook, read from {copy}."
    else:
        notebook = nbformat.read(path, as_version=4)
        kind, label = mode, ""
    title, summary = title_and_summary(notebook)
    page = Page(stem, title or stem, summary, kind, label, reading_words(notebook))
    if kind == "from":
        return page, notebook
    if stem[:2] in GPU_ONLY or source is not None:
        page.kind = "unexecuted"
        page.label = (
            "Not executed: this notebook needs a GPU (and downloads CLIP weights)"
            if stem[:2] in GPU_ONLY
            else f"Not executed: {source} holds no executed copy of this notebook"
        ) + "; its code is shown without outputs."
        return page, notebook
    print(f"executing {path.name} in {mode} mode ...", flush=True)
    page.seconds, page.failed = execute(notebook, fast=mode == "fast")
    ran = f"Executed by this build in {mode} mode ({page.seconds:.0f} s)."
    page.label = (FAST_LABEL + " " if mode == "fast" else "") + ran
    if page.failed:
        page.label += f" It stopped with an error: {page.failed}"
    print(
        f"{path.name}: {page.seconds:.0f} s" + (f", FAILED: {page.failed}" if page.failed else ""), flush=True
    )
    return page, notebook


def exporter():
    """nbconvert's lab template with the CDN scripts replaced by the book's local assets."""
    from nbconvert import HTMLExporter

    return HTMLExporter(
        template_name="lab", template_file="book.html.j2",
        extra_loaders=[jinja2.DictLoader({"book.html.j2": TEMPLATE})],
    )  # fmt: skip


def nav(pages: Sequence[Page], i: int) -> str:
    links = [
        '<a href="index.html">↑ the book</a>',
        f'<a href="{pages[i].stem}.ipynb" download>this notebook (.ipynb)</a>',
        f'<a href="{pages[i].student_file}" download>student copy (.ipynb, no solutions)</a>',
    ]
    if i > 0:
        links.append(f'<a href="{pages[i - 1].file}">← {html.escape(pages[i - 1].title)}</a>')
    if i + 1 < len(pages):
        links.append(f'<a href="{pages[i + 1].file}">{html.escape(pages[i + 1].title)} →</a>')
    return "".join(links)


def measured_times(path: Path) -> dict[str, dict]:
    """Per-notebook entries of benchmarks/notebook_times.json (normal mode, top to bottom), or none."""
    try:
        return json.loads(path.read_text()).get("notebooks", {})
    except (OSError, ValueError):
        return {}


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def run_time(entry: dict | None) -> str:
    if not entry or entry.get("seconds") is None:
        return "run time not measured"
    where = entry.get("machine", {})
    on = f" on {where.get('nproc')} cores ({where.get('date', '')[:10]})" if where else ""
    state = "" if entry.get("completed", True) else ", stopped by an error"
    live = entry.get("live") or {}
    live_part = f" ({_minutes(live['seconds'])} live)" if live.get("seconds") is not None else ""
    return f"runs in {_minutes(entry['seconds'])} in normal mode{live_part}{on}{state}"


def inline_markdown(text: str) -> str:
    """One paragraph of a notebook's markdown as inline HTML (its emphasis and code, not raw asterisks)."""
    import mistune

    return mistune.html(text).strip().removeprefix("<p>").removesuffix("</p>")


def teaching_page(markdown: str) -> str:
    """The teacher's page (TEACHING.md) as a page of the book, so a teacher reads the plan beside the chapters."""
    import mistune

    body = mistune.create_markdown(plugins=["table"])(markdown)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>holomerge_lab: teaching with the tour</title>
<link rel="stylesheet" href="assets/book.css"></head>
<body><main class="hm-book-front">
<p><a href="index.html">↑ the book</a></p>
{body}
</main></body></html>
"""


def front_page(
    pages: Sequence[Page], times: dict[str, dict], mode: str, command: str, teaching: bool = False
) -> str:  # fmt: skip
    """The index: what to read in what order, how long each takes to read and to run, and how this book was made."""
    items = []
    for page in pages:
        read = max(1, round(page.words / WORDS_PER_MINUTE))
        built = (
            page.label
            if page.kind != "fast" or page.failed
            else f"Fast-mode preview, executed in {page.seconds:.0f} s."
        )
        items.append(
            f'<li><a href="{page.file}"><b>{html.escape(page.title)}</b></a><br>{inline_markdown(page.summary)}<br>'
            f"<small>≈ {read} min to read · {html.escape(run_time(times.get(page.stem)))} · "
            f"{html.escape(built)}</small></li>"
        )
    banner = f'<p class="hm-book-banner hm-book-fast">{html.escape(FAST_LABEL)}</p>' if mode == "fast" else ""
    teacher = (
        '<p><a href="teaching.html"><b>Teaching with the tour</b></a>: a 90-minute session plan, a 45-minute '
        "variant, what each figure shows and the questions to pause on.</p>\n"
        if teaching
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>holomerge_lab: the book</title>
<link rel="stylesheet" href="assets/book.css"></head>
<body><main class="hm-book-front">
<h1>holomerge_lab: the book</h1>
{banner}
<p>The tour of continual model merging, one notebook a chapter, with the outputs of a run. Read them in this order:
00 is the whole method in one pass; 01 to 05 take its stages apart one at a time (tangent fine-tuning, loss
barriers, Adam's v as a Fisher, the merge rules, alignment); 06 combines them; 07 asks what is still open; 08 runs
the same calls on CLIP with a GPU. Each chapter ends with exercises: open it in JupyterLab (<code>make lab</code>),
Colab or Binder to move its widgets and rerun it. Each chapter's page also offers a student copy, the same
notebook without its worked solutions.</p>
{teacher}<ol>
{"".join(items)}
</ol>
<p><small>Reading times count the prose and code at {WORDS_PER_MINUTE} words a minute. Run times are from
<code>benchmarks/notebook_times.json</code> (<code>python benchmarks/notebook_times.py</code>, each notebook top to
bottom in a fresh kernel, its heavy figures from the shipped results; live: every value recomputed, timed by
<code>python -m holomerge_lab.tour.shipped</code>). Built {datetime.now().isoformat(timespec="minutes")} by
<code>{html.escape(command)}</code>.</small></p>
</main></body></html>
"""


def clear_output_folder(out: Path) -> None:
    """Make `out` an empty book folder; refuse a folder with anything in it that this module did not write."""
    replace_folder(out, MARKER, "book", "python -m holomerge_lab.tour.book")


def build(
    out: Path, names: Sequence[str] = (), mode: str = "normal", source: Path | None = None,
    times: Path = TIMES, notebooks: Path = NOTEBOOKS, command: str = "python -m holomerge_lab.tour.book",
    teaching: Path = TEACHING,
) -> list[Page]:  # fmt: skip
    """Write the book into `out` (and nowhere else) and return its pages."""
    paths = sorted(notebooks.glob("[0-9][0-9]_*.ipynb"))
    chosen = [p for p in paths if not names or p.name[:2] in names]
    if not chosen:
        raise SystemExit(f"no notebook matches {list(names)}; choose among {[p.name[:2] for p in paths]}")
    if source is not None and not source.is_dir():
        raise SystemExit(f"--from {source}: no such folder")
    clear_output_folder(out)
    copy_assets(out / "assets")
    prepared = [prepare_page(path, mode, source) for path in chosen]
    pages = [page for page, _ in prepared]
    render = exporter()
    for i, (page, notebook) in enumerate(prepared):
        nbformat.write(
            notebook, out / f"{page.stem}.ipynb"
        )  # the page's notebook with its outputs, to download
        nbformat.write(student_copy(nbformat.read(chosen[i], as_version=4)), out / page.student_file)
        body, _ = render.from_notebook_node(
            make_static(notebook),
            resources={"metadata": {"name": page.title}, "book": {"nav": nav(pages, i), "kind": page.kind,
                                                                   "label": page.label}},
        )  # fmt: skip
        (out / page.file).write_text(body, encoding="utf-8")
    if teaching.is_file():
        (out / "teaching.html").write_text(teaching_page(teaching.read_text()), encoding="utf-8")
    front = front_page(pages, measured_times(times), mode, command, teaching=teaching.is_file())
    (out / "index.html").write_text(front, encoding="utf-8")
    return pages


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m holomerge_lab.tour.book", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "book", help="the book's folder")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--fast", action="store_true", help="execute in fast mode (a labelled preview)")
    group.add_argument(
        "--from", dest="source", type=Path, help="render the executed notebooks in this folder"
    )
    parser.add_argument(
        "--notebooks", nargs="*", default=[], help="notebook prefixes, e.g. 00 01 (default: all)"
    )
    parser.add_argument("--times", type=Path, default=TIMES, help="run times measured by notebook_times.py")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    command = " ".join(["python -m holomerge_lab.tour.book", *(sys.argv[1:] if argv is None else argv)])
    mode = "fast" if args.fast else "normal"
    pages = build(args.out, args.notebooks, mode, args.source, times=args.times, command=command)
    failed = [p.stem for p in pages if p.failed]
    print(f"book: {args.out / 'index.html'} ({len(pages)} notebooks, {time.perf_counter() - began:.0f} s)")
    if failed:
        print(f"these notebooks stopped with an error (their pages show where): {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
