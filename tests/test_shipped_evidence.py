"""The 5-seed tables (docs/results.md, which the README links) are what `holomerge-lab summarize` prints from the
shipped run JSON, and every claim of its caveats cites a row of them with that row's interval and Holm-adjusted
verdict."""

import json
import re
from pathlib import Path

import pytest

from holomerge_lab.analysis import evidence
from holomerge_lab.cli import main

ROOT = Path(__file__).parent.parent
EVIDENCE = ROOT / "benchmarks" / "evidence"
RESULTS = ROOT / "docs" / "results.md"  # the measurements, moved out of the README (issue 29)
TAGS = {"CIL": "split-mnist-fashion-animal", "CIL lr 3e-4": "split-mnist-fashion-animal-lr3e-4", "DIL": "rotated-mnist"}
# (stream · comparison · Δ ± half-width · verdict), as the caveats write a citation
CITATION = re.compile(r"(CIL lr 3e-4|CIL|DIL) · ([^·]+?) · ([+−-]\d+\.\d\d ± \d+\.\d\d) · ([^;()]+?)(?=[;)])")


@pytest.mark.parametrize("stream", list(TAGS.values()))
def test_the_results_tables_come_from_the_shipped_runs(stream, capsys):
    assert main(["summarize", str(ROOT / "benchmarks" / "evidence" / stream)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith(f"{stream.removesuffix('-lr3e-4')}: ") and "seeds 0 1 2 3 4" in printed[0]
    page = {line.rstrip() for line in RESULTS.read_text().splitlines()}
    rows = [line.rstrip() for line in printed[1:] if line.strip()]
    assert len(rows) > 18 and [row for row in rows if row not in page] == []


def _caveats() -> str:
    text = RESULTS.read_text()
    section = text[text.index("## Caveats the runs teach") :]
    return " ".join(section.split())  # one line


def _effects_tables() -> dict[str, dict[str, dict]]:
    tables = {}
    for tag, stream in TAGS.items():
        runs = [json.loads(p.read_text()) for p in sorted((EVIDENCE / stream).glob("*.json"))]
        rows = evidence.effects_table(evidence.effects([r for r in runs if "acc_matrix" in r]))
        tables[tag] = {row["comparison"]: row for row in rows}
    return tables


def test_every_caveat_cites_its_row_with_the_tables_interval_and_holm_verdict():
    tables, cited = _effects_tables(), CITATION.findall(_caveats())
    assert len(cited) >= 30, cited
    for tag, comparison, delta, verdict in cited:
        rows = [row for name, row in tables[tag].items() if name == comparison or name.startswith(f"{comparison} (")]
        assert len(rows) == 1, (tag, comparison)
        assert rows[0]["Δ ACC (task mean) (points)"] == delta.replace("−", "-"), (tag, comparison, delta)
        assert rows[0]["verdict (Holm)"] == verdict.strip(), (tag, comparison, verdict)


@pytest.mark.parametrize("page", ["README.md", *sorted(p.name for p in (ROOT / "docs").glob("*.md"))])
def test_the_prose_never_reads_a_wide_interval_as_equal(page):
    text = (ROOT / page if page == "README.md" else ROOT / "docs" / page).read_text()
    prose = re.sub(r"```.*?```", "", text, flags=re.S)  # the printed tables keep their own words
    for phrase in ("unclear", "level with", "does nothing", "as good as", "as inert as", "point by point"):
        assert phrase not in prose, (page, phrase)


def test_the_seed_spread_the_results_page_quotes_is_the_runs():
    """'a row's standard deviation over the 5 seeds is LO to HI points (every row but continual TIES)'."""
    import statistics

    spreads = []
    for stream in TAGS.values():
        rows: dict[str, list[float]] = {}
        for path in (EVIDENCE / stream).glob("*.json"):
            run = json.loads(path.read_text())
            if "acc_matrix" in run and run["label"] != "ties":
                rows.setdefault(run["label"], []).append(100 * run["acc"])
        spreads += [statistics.stdev(values) for values in rows.values()]
    quoted = f"standard deviation over the 5 seeds is {min(spreads):.1f} to {max(spreads):.1f} points"
    assert quoted in " ".join(RESULTS.read_text().split())


def test_the_results_alignment_table_is_the_sweeps(tmp_path, monkeypatch):
    """The table `python benchmarks/alignment_sweep.py` writes from its recorded runs, row for row."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import alignment_sweep
    import seeded_search

    seeded_search.write_markdown(alignment_sweep.table(seeded_search.load(alignment_sweep.RESULTS)), tmp_path / "t.md")
    sweep = [line for line in (tmp_path / "t.md").read_text().splitlines() if line.strip()]
    assert sweep == [line for line in (ROOT / "benchmarks" / "alignment_sweep.md").read_text().splitlines() if line]
    page = RESULTS.read_text().splitlines()
    start = page.index(sweep[0])
    assert page[start : start + len(sweep)] == sweep
