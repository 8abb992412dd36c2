"""The README's picture (docs/stage_effects.svg) is what `python benchmarks/readme_figure.py` draws from the shipped
5-seed runs, byte for byte, and the numbers it writes are the paired stage effects of those runs, as the tables of
docs/results.md print them."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import statistics
from pathlib import Path

ROOT = Path(__file__).parent.parent
FIGURE = ROOT / "docs" / "stage_effects.svg"
_spec = importlib.util.spec_from_file_location("readme_figure", ROOT / "benchmarks" / "readme_figure.py")
readme_figure = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(readme_figure)


def test_the_committed_figure_is_what_the_command_draws(tmp_path):
    assert readme_figure.main(["--out", str(tmp_path / "figure.svg")]) == 0
    made = (tmp_path / "figure.svg").read_bytes()
    assert made == FIGURE.read_bytes(), "docs/stage_effects.svg is stale: run `python benchmarks/readme_figure.py`"
    assert len(made) < 60 * 1024  # a small picture for the README's first screen


def test_the_readme_shows_it_in_its_first_screen_with_the_command():
    lines = (ROOT / "README.md").read_text().splitlines()
    shown = next(i for i, line in enumerate(lines) if "](docs/stage_effects.svg)" in line)
    assert shown < 25
    assert readme_figure.COMMAND in " ".join(lines[shown : shown + 6])


def test_each_row_is_the_stage_effect_of_the_runs_and_the_tables_row():
    """Recomputed here from the run JSON alone (holistic − holistic −stage per seed, a t-interval with scipy's
    quantile), then read in the committed SVG and in docs/results.md's paired-effects table of that stream."""
    from scipy import stats

    svg = FIGURE.read_text()
    results = (ROOT / "docs" / "results.md").read_text()
    rows = readme_figure.stage_rows()
    assert [(r["stage"], r["stream"]) for r in rows] == [
        (stage, stream) for stage in ("pre", "during", "post") for stream in readme_figure.STREAMS
    ]
    for row in rows:
        runs = [json.loads(p.read_text()) for p in (readme_figure.EVIDENCE / row["stream"]).glob("*-seed*.json")]
        acc = {(r["label"], r["seed"]): r["acc"] for r in runs}
        diffs = [100 * (acc["holistic", s] - acc[f"holistic −{row['stage']}", s]) for s in range(5)]
        assert row["seeds"] == [0, 1, 2, 3, 4] and row["differences"] == diffs
        half = stats.t.ppf(0.975, 4) * statistics.stdev(diffs) / 5**0.5
        assert row["interval"] == f"{statistics.mean(diffs):+.2f} ± {half:.2f}".replace("-", "−")
        assert svg.count(f">{readme_figure.label(row)}<") == 1, readme_figure.label(row)
        printed = re.compile(
            rf"^stage {row['stage']} \({row['name']}\) +{re.escape(row['interval'].replace('−', '-'))} .* "
            rf"{re.escape(row['verdict'])}$", flags=re.M,
        )  # fmt: skip
        assert len(printed.findall(results)) == 1, (row["stream"], row["stage"])


def test_a_changed_run_changes_the_figure(tmp_path):
    """The comparison above can fail: one seed's accuracy moved by a point gives another interval and other bytes."""
    for stream in readme_figure.STREAMS:
        shutil.copytree(readme_figure.EVIDENCE / stream, tmp_path / "evidence" / stream)
    path = tmp_path / "evidence" / "rotated-mnist" / "holistic_−pre-seed0.json"
    run = json.loads(path.read_text())
    path.write_text(json.dumps(dict(run, acc=run["acc"] + 0.01)))
    before = {(r["stream"], r["stage"]): r for r in readme_figure.stage_rows()}
    after = {(r["stream"], r["stage"]): r for r in readme_figure.stage_rows(tmp_path / "evidence")}
    assert after["rotated-mnist", "pre"]["interval"] != before["rotated-mnist", "pre"]["interval"]
    assert {k: v for k, v in after.items() if k != ("rotated-mnist", "pre")} == {
        k: v for k, v in before.items() if k != ("rotated-mnist", "pre")
    }
    readme_figure.main(["--evidence", str(tmp_path / "evidence"), "--out", str(tmp_path / "figure.svg")])
    assert (tmp_path / "figure.svg").read_bytes() != FIGURE.read_bytes()


def test_the_captions_reading_is_the_figures_verdicts():
    """The README's caption says what the figure shows; each clause is a row's Holm verdict."""
    caption = " ".join((ROOT / "README.md").read_text().split())
    assert (
        "v-weighting helps on the class-incremental demo, tangent fine-tuning hurts on rotated digits, and alignment"
        " is equivalent to none within ±1 point on both." in caption
    )
    verdict = {(r["stage"], r["stream"]): r["verdict"] for r in readme_figure.stage_rows()}
    assert verdict["during", "split-mnist-fashion-animal"] == "helps"
    assert verdict["pre", "rotated-mnist"] == "hurts"
    assert {verdict["post", stream] for stream in readme_figure.STREAMS} == {"equivalent within ±1 point"}
