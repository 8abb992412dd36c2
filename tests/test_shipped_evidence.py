"""The README's 5-seed tables are what `holomerge-lab summarize` prints from the shipped run JSON."""

from pathlib import Path

import pytest

from holomerge_lab.cli import main

ROOT = Path(__file__).parent.parent


@pytest.mark.parametrize("stream", ["split-mnist-fashion-animal", "rotated-mnist"])
def test_readme_tables_come_from_the_shipped_runs(stream, capsys):
    assert main(["summarize", str(ROOT / "benchmarks" / "evidence" / stream)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith(f"{stream}: ") and "seeds 0 1 2 3 4" in printed[0]
    readme = {line.rstrip() for line in (ROOT / "README.md").read_text().splitlines()}
    rows = [line.rstrip() for line in printed[1:] if line.strip()]
    assert len(rows) > 20 and [row for row in rows if row not in readme] == []
