"""TEACHING.md quotes only what the repository measured: run times from notebook_times.json, results from the
tables of the README, docs/ (docs/results.md holds the 5-seed tables) and the benchmarks. A rerun that changes a
number makes this fail until the page is updated."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PAGE = ROOT / "TEACHING.md"
TIMES = ROOT / "benchmarks" / "notebook_times.json"
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
# where a quoted result may come from
SOURCES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "benchmarks").glob("*.md"))]
TIME = re.compile(r"(\d+) (s|min)\b")


def run_times_table(text: str) -> tuple[list[list[str]], str]:
    """The rows of the *Run times* table (cells stripped), and the page without that table."""
    start = text.index("### Run times")
    lines = text[start:].splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next(i for i in range(first, len(lines)) if not lines[i].startswith("|"))
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[first + 2 : end]]
    rest = text[:start] + "\n".join(lines[:first] + lines[end:])
    return rows, rest


def measured() -> dict[str, dict]:
    return json.loads(TIMES.read_text())["notebooks"] if TIMES.is_file() else {}


def quoted_seconds_match(quoted: str, seconds: float) -> bool:
    """`quoted` ("84 s", "3 min") is `seconds` rounded as written."""
    match = TIME.fullmatch(quoted.split(",")[0])
    if match is None:
        return False
    value, unit = int(match[1]), match[2]
    return value == round(seconds if unit == "s" else seconds / 60)


def test_quoted_run_times_are_the_measured_ones():
    """Per notebook: its time from the shipped results, its live time (the run that made them) and its slowest
    live cell, as benchmarks/notebook_times.json has them."""
    rows, _ = run_times_table(PAGE.read_text())
    times = measured()
    by_prefix = {row[0][:2]: row for row in rows}
    assert sorted(by_prefix) == [stem[:2] for stem in NOTEBOOKS], "one row per notebook"
    for stem in NOTEBOOKS:
        _, shipped, live, slowest = by_prefix[stem[:2]]
        entry = times.get(stem)
        if shipped.startswith("not measured yet"):
            assert entry is None or entry.get("seconds") is None, f"{stem} is measured now: quote its time"
            continue
        assert entry is not None, f"{stem}: TEACHING.md quotes {shipped!r}, notebook_times.json has no entry"
        assert quoted_seconds_match(shipped, entry["seconds"]), (stem, shipped, entry["seconds"])
        assert ("stopped by an error" in shipped) == (not entry.get("completed", True)), (stem, shipped)
        assert quoted_seconds_match(live, entry["live"]["seconds"]), (stem, live, entry["live"]["seconds"])
        cell = re.match(r"`([^`]+)`", slowest)  # the slowest live cell, named by its first line
        first = max(entry["live"]["cells"], key=lambda c: c["seconds"])["first_line"]
        assert cell and first.startswith(cell[1]), (stem, slowest, first)


def test_no_run_time_is_quoted_outside_the_table():
    _, rest = run_times_table(PAGE.read_text())
    near = r"[^.\n|]{0,40}"
    pattern = (
        rf"\d+ ?(s|min)\b{near}(normal[- ]mode|live|shipped)|(normal[- ]mode|live|shipped){near}\b\d+ ?(s|min)\b"
    )
    assert re.search(pattern, rest) is None, "quote notebook run times in the Run times table only"


def test_every_result_quoted_comes_from_a_shipped_table():
    """Every interval (a ± b) and every decimal or large number on the page appears in README.md, docs/*.md or
    benchmarks/*.md, signs aside (the page may say "gains 3.58" where a table says -3.58)."""
    _, rest = run_times_table(PAGE.read_text())
    # benchmarks/tour_findings.md writes "+6.22 points ± 1.44": the unit between the mean and its half-width
    sources = " ".join(path.read_text() for path in SOURCES).replace(" points ± ", " ± ")
    intervals = re.findall(r"\d+\.\d+ ± \d+\.\d+", rest)
    numbers = re.findall(r"(?<![\w.])\d+\.\d+(?![\w.])|\b\d{4,}\b", re.sub(r"\d+\.\d+ ± \d+\.\d+", " ", rest))
    assert len(intervals) > 20 and numbers
    missing = [q for q in intervals + numbers if q not in sources]
    assert missing == [], f"not in README.md, docs/*.md or benchmarks/*.md: {missing}"


@pytest.mark.parametrize(
    "quoted, seconds, ok",
    [("84 s", 84.15, True), ("3 min", 177.3, True), ("2 min", 177.3, False), ("85 s", 84.15, False),
     ("about a minute", 60, False)],
)  # fmt: skip
def test_rounding_as_written(quoted, seconds, ok):
    assert quoted_seconds_match(quoted, seconds) is ok


def test_quoted_press_times_are_the_benchmarks():
    """TEACHING.md and docs/notebooks.md quote a live press of notebook 00's three seeds as
    benchmarks/bench_press.json measured it (after: what the panel does), rounded to the second."""
    press = json.loads((ROOT / "benchmarks" / "bench_press.json").read_text())["live"]["after"]
    for page in (PAGE, ROOT / "docs" / "notebooks.md"):
        quoted = re.findall(r"(\d+) s in all on\s+2 cores, the first row\s+after (\d+) s", page.read_text())
        assert quoted, f"{page.name} does not quote the press times"
        for total, first in quoted:
            assert (int(total), int(first)) == (round(press["seconds"]), round(press["first_row_s"])), page.name
