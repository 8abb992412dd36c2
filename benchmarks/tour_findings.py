"""The tour's findings: every notebook's "predict, then check" prompts and what its numbers say, as a reader sees them.

    python benchmarks/notebook_times.py --keep build/executed   # each notebook from the shipped results
    python benchmarks/tour_findings.py build/executed             # -> benchmarks/tour_findings.md

Reads the executed notebooks (normal mode, every heavy value from the shipped results) and writes, per notebook, each
prompt with the text its `# What the numbers say` cell printed, then its "What we found". TEACHING.md quotes from this
file (tests/test_teaching.py); tests/test_shipped.py opens each notebook from the shipped results and checks its
section here is what it prints now, so a re-recorded bundle that changes a verdict fails until this file is rewritten.
"""

import argparse
import sys
from pathlib import Path

import nbformat

from holomerge_lab.files import atomic_write_text
from holomerge_lab.tour import findings, shipped

OUT = Path(__file__).parent / "tour_findings.md"
HEADER = """# What the tour's numbers say

Each notebook's "predict, then check" prompts and the answer its `# What the numbers say` cell prints, then its
"What we found", as a reader sees them: normal mode, every heavy value from the shipped results
(`holomerge_lab/results/`, recorded by `python -m holomerge_lab.tour.shipped`). Intervals are 95 % over the seeds
named; verdicts are those of `holomerge_lab/analysis/reading.py`. Written by
`python benchmarks/notebook_times.py --keep build/executed && python benchmarks/tour_findings.py build/executed`;
tests/test_shipped.py checks each section against the notebook opened from the shipped results.
"""


def section(path: Path) -> str:
    """One executed notebook's section, titled by its file stem."""
    notebook = nbformat.read(path, as_version=4)
    return findings.to_markdown(path.stem, findings.findings(notebook))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("executed", type=Path, help="the folder `notebook_times.py --keep` wrote")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    paths = sorted(args.executed.glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        sys.exit(f"no executed notebooks in {args.executed}: run `python benchmarks/notebook_times.py --keep "
                 f"{args.executed}` first")  # fmt: skip
    recorded = {p.stem: shipped.read_file(shipped.BUNDLE / f"{p.stem}.json")["made_by"]["date"][:10] for p in paths}
    dates = ", ".join(f"{stem[:2]} {day}" for stem, day in recorded.items())
    text = HEADER + f"\nShipped results recorded: {dates}.\n\n" + "\n\n".join(section(p) for p in paths) + "\n"
    atomic_write_text(args.out, text)
    print(f"{args.out}: {len(paths)} notebooks")
