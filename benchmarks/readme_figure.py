"""The README's picture: each stage's paired effect over 5 seeds on the two demo streams, as a small forest plot.

    python benchmarks/readme_figure.py            # -> docs/stage_effects.svg

Reads the shipped 5-seed runs (benchmarks/evidence/<stream>/*.json, the run JSON behind docs/results.md's tables)
and draws, for each stage (pre = tangent fine-tuning, during = v-weighted merge, post = alignment) on each demo
stream, holistic minus holistic with that stage off, per seed, in points of accuracy: every seed's difference as a
dot, the mean with its 95 % t-interval, and beside it the interval and the Holm-adjusted verdict exactly as the
stream's paired-effects table prints them (`holomerge-lab summarize`). The shaded band is the ±1 point equivalence
margin. The SVG is deterministic (fixed hash salt, no date), so tests/test_readme_figure.py regenerates it and
compares it byte for byte with the committed one.
"""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Sequence
from pathlib import Path

from holomerge_lab.analysis import evidence, stats
from holomerge_lab.files import atomic_write

ROOT = Path(__file__).parent.parent
EVIDENCE = ROOT / "benchmarks" / "evidence"
OUT = ROOT / "docs" / "stage_effects.svg"
STREAMS = {  # the two demo streams, as the figure names them, with their colours
    "split-mnist-fashion-animal": ("class-incremental: split-mnist-fashion-animal", "#1f6fb4"),
    "rotated-mnist": ("domain-incremental: rotated-mnist", "#d9731a"),
}
COMMAND = "python benchmarks/readme_figure.py"


def stage_rows(folder: Path = EVIDENCE) -> list[dict]:
    """Per stage, then stream: the per-seed differences in points, the mean and half-width, and the table's own
    words for the interval and the Holm verdict (the Holm family is the stream's whole table, as it prints)."""
    rows = []
    for stage, name in evidence.STAGE_NAMES.items():
        for stream in STREAMS:
            runs = [json.loads(p.read_text()) for p in sorted((folder / stream).glob("*.json"))]
            paired = evidence.effects([r for r in runs if "acc_matrix" in r])
            table = {row["comparison"]: row for row in evidence.effects_table(paired)}
            (effect,) = [e["effect"] for e in paired if e["other"] == f"{evidence.REFERENCE} −{stage}"]
            printed = table[f"stage {stage} ({name})"]
            rows.append({
                "stage": stage, "name": name, "stream": stream, "seeds": list(effect.seeds),
                "differences": [100 * d for d in effect.differences],
                "mean": 100 * effect.interval.mean, "half_width": 100 * effect.interval.half_width,
                "interval": printed["Δ ACC (task mean) (points)"].replace("-", "−"),
                "verdict": printed["verdict (Holm)"],
            })  # fmt: skip
    return rows


def label(row: dict) -> str:
    """What the figure writes beside a row: the table's interval and Holm verdict."""
    return f"{row['interval']} · {row['verdict']}"


def draw(rows: Sequence[dict]) -> bytes:
    """The forest plot as SVG bytes, the same bytes for the same rows and matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    style = {"svg.hashsalt": "holomerge_lab", "svg.fonttype": "none", "font.size": 8, "font.family": "DejaVu Sans",
             "axes.spines.top": False, "axes.spines.right": False, "axes.spines.left": False}  # fmt: skip
    with plt.rc_context(style):
        fig, ax = plt.subplots(figsize=(8.0, 3.0))
        margin = 100 * stats.MARGIN
        ax.axvspan(-margin, margin, color="#eeeeee", zorder=0, label=f"±{margin:g} point: the equivalence margin")
        ax.axvline(0, color="#888888", lw=0.8, zorder=1)
        ticks, names = [], []
        for i, row in enumerate(rows):
            y = -(i + i // len(STREAMS) * 0.6)  # a gap between the stages
            colour = STREAMS[row["stream"]][1]
            ax.errorbar(row["mean"], y, xerr=row["half_width"], fmt="o", ms=4.5, color=colour, capsize=2.5,
                        lw=1.4, zorder=3, label=STREAMS[row["stream"]][0] if i < len(STREAMS) else None)  # fmt: skip
            ax.scatter(row["differences"], [y - 0.28] * len(row["differences"]), s=8, color=colour, alpha=0.55,
                       lw=0, zorder=2)  # fmt: skip
            ax.annotate(label(row), (1.0, y), xycoords=("axes fraction", "data"), xytext=(6, 0),
                        textcoords="offset points", va="center", fontsize=7.5, color=colour)  # fmt: skip
            if i % len(STREAMS) == 0:
                ticks.append(y - (len(STREAMS) - 1) / 2)
                names.append(f"{row['stage']}: {row['name']}")
        ax.set_yticks(ticks, names)
        ax.tick_params(axis="y", length=0)
        ax.set_xlabel("points of accuracy: holistic − holistic with the stage off; mean ± 95 %, each seed a dot")
        handles, names = ax.get_legend_handles_labels()
        ax.legend(handles[1:] + handles[:1], names[1:] + names[:1], loc="lower left", fontsize=7, frameon=False,
                  bbox_to_anchor=(0.0, 1.0), ncol=2, borderaxespad=0.3)  # fmt: skip
        fig.subplots_adjust(left=0.2, right=0.68, top=0.84, bottom=0.15)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="svg", metadata={"Date": None})
        plt.close(fig)
    return buffer.getvalue()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evidence", type=Path, default=EVIDENCE, help="the folder of per-stream run JSON")
    parser.add_argument("--out", type=Path, default=OUT, help="the SVG to write")
    args = parser.parse_args(argv)
    rows = stage_rows(args.evidence)
    svg = draw(rows)
    atomic_write(args.out, lambda f: f.write(svg))
    for row in rows:
        print(f"{row['stream']:28} stage {row['stage']:7} {label(row)}")
    print(f"{args.out}: {len(svg) / 1024:.1f} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
