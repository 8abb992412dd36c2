"""The regime map (benchmarks/regime_map.py, analysis/regime.py, notebook 09): the reduced grid reproduces through the
command that made the shipped one, its statistics agree with scipy and statsmodels, and the shipped table is the
one its recorded runs give."""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats

from holomerge_lab.analysis import reading, regime

ROOT = Path(__file__).parent.parent
SCRIPT = ROOT / "benchmarks" / "regime_map.py"


def _command(out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--out", str(out), "--workers", "1", *extra],
                          env=env, capture_output=True, text=True, cwd=ROOT / "benchmarks")  # fmt: skip


def test_the_reduced_grid_reproduces_through_the_same_command(tmp_path):
    """Two points × five rows × two seeds, the mechanisms on one seed, the markdown; a second call runs nothing."""
    out = tmp_path / "map"
    done = _command(out, "--seeds", "0", "1", "--mechanism-seeds", "0")
    assert done.returncode == 0, done.stderr[-3000:]
    runs = json.loads((out / "effects.json").read_text())
    points = [p.name for p in regime.SMOKE_GRID]
    assert sorted((r["candidate"], r["method"], r["seed"]) for r in runs) == sorted(
        (p, m, s) for p in points for m in regime.METHODS for s in (0, 1)
    )
    for r in runs:  # each row is its switches' run at its point's settings
        switches = {"pre": True, "during": True, "post": True, **regime.METHODS[r["method"]]}
        assert all(r["config"].get(k, True) == v for k, v in switches.items()), r["config"]
        assert 0.0 <= r["acc"] <= 1.0
    lr = {r["config"]["lr"] for r in runs if r["candidate"] == points[1]}
    assert lr == {1e-3}
    mechanisms = json.loads((out / "mechanisms.json").read_text())
    assert sorted((m["candidate"], m["seed"]) for m in mechanisms) == sorted((p, 0) for p in points)
    for m in mechanisms:
        assert set(regime.MECHANISMS) <= set(m) and all(math.isfinite(m[k]) for k in regime.MECHANISMS)
        assert m["linearity gap"] >= 0 and 0 <= m["ξ standard"] <= 2 and -1 <= m["share ρ (v vs true)"] <= 1
    text = (tmp_path / "map.md").read_text()
    assert text.count("| split-mnist-fashion-animal |") == len(points) * len(regime.EFFECTS)
    again = _command(out, "--seeds", "0", "1", "--mechanism-seeds", "0")  # resumes: nothing left to run
    assert again.returncode == 0 and "runs" not in again.stderr and "mechanisms:" not in again.stderr
    assert (out / "effects.json").read_text() == json.dumps(runs, indent=1)


def _rows(values: dict[str, dict[int, float]], point: str) -> list[dict]:
    return [{"candidate": point, "method": m, "seed": s, "acc": a} for m, by in values.items() for s, a in by.items()]


def test_effects_are_paired_by_seed_and_adjusted_over_the_points():
    """Each effect's interval is scipy's t-interval of the per-seed differences, its Holm p statsmodels', and its
    adjusted interval the Bonferroni one over the points of its stream."""
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(0)
    grid = regime.GRID[:4]
    rows = []
    for point in grid:
        base = rng.uniform(0.6, 0.8, 5)
        rows += _rows({m: dict(enumerate(base + rng.normal(0.01 * i, 0.01, 5))) for i, m in
                       enumerate(regime.METHODS)}, point.name)  # fmt: skip
    found = regime.effects(rows, grid)
    assert len(found) == len(grid) * len(regime.EFFECTS)
    for effect, (on, off) in regime.EFFECTS.items():
        family = [e for e in found if e["effect"] == effect]
        assert [e["point"] for e in family] == [p.name for p in grid]
        p_raw = []
        for e in family:
            a = regime.by_seed(rows, e["point"], on)
            b = regime.by_seed(rows, e["point"], off)
            d = np.array([a[s] - b[s] for s in sorted(a)])
            sem = scipy_stats.sem(d)
            assert e["mean"] == pytest.approx(d.mean())
            assert e["half_width"] == pytest.approx(scipy_stats.t.ppf(0.975, len(d) - 1) * sem)
            level = 1 - 0.05 / (2 * len(grid))
            assert e["adjusted_half_width"] == pytest.approx(scipy_stats.t.ppf(level, len(d) - 1) * sem)
            p_raw.append(scipy_stats.ttest_1samp(d, 0).pvalue)
        assert [e["p"] for e in family] == pytest.approx(p_raw)
        assert [e["p_holm"] for e in family] == pytest.approx(list(multipletests(p_raw, method="holm")[1]))


def test_best_prefers_a_point_where_holm_says_it_helps():
    rows = [{"effect": "pre", "mean": 0.05, "verdict_holm": "cannot tell apart", "point": "a"},
            {"effect": "pre", "mean": 0.02, "verdict_holm": "a > b", "point": "b"},
            {"effect": "post", "mean": 0.01, "verdict_holm": "cannot tell apart", "point": "c"}]  # fmt: skip
    assert regime.best(rows, "pre")["point"] == "b" and regime.best(rows, "post")["point"] == "c"


def test_association_reads_spearmans_rho_as_scipy_and_by_ranks():
    xs, ys = [0.1, 0.4, 0.2, 0.9, 0.5, 0.7], [1.0, 2.5, 1.1, 4.0, 2.0, 3.9]
    ranks = [scipy_stats.rankdata(v) for v in (xs, ys)]
    rho = float(np.corrcoef(*ranks)[0, 1])  # Spearman's ρ is Pearson's r of the ranks
    said = reading.association(xs, ys, "x", "y", predicted="rises")
    assert f"ρ = {rho:+.2f}" in said and "y rises with x" in said and "prediction (rises) holds" in said
    assert "cannot tell" in reading.association([1, 2, 3], [2, 1, 3], "x", "y")
    assert "too few" in reading.association([1, 2], [2, 1], "x", "y")
    with pytest.raises(ValueError):
        reading.association([1, 2, 3], [1, 2], "x", "y")


def test_the_shipped_map_is_what_its_recorded_runs_give(tmp_path, monkeypatch):
    """benchmarks/regime_map.md is what the script writes from the committed effects and mechanisms, line for line;
    every grid point has its five rows on at least three seeds and, where measured, its mechanisms on seeds 0 and 1
    (0-2 at the two points notebook 09 compares)."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import regime_map
    import seeded_search

    folder = regime_map.OUT
    runs, mechanisms = (seeded_search.load(folder / f) for f in ("effects.json", "mechanisms.json"))
    text = regime_map.write(runs, mechanisms, regime.GRID, tmp_path / "map.md")
    assert text == (ROOT / "benchmarks" / "regime_map.md").read_text()
    for point in regime.GRID:
        for method in regime.METHODS:
            assert {0, 1, 2} <= set(regime.by_seed(runs, point.name, method)), (point.name, method)
        if point.measured:
            wanted = {0, 1, 2} if point.name in (regime.GRID[0].name, "CIL: learning rate 3e-3") else {0, 1}
            assert {m["seed"] for m in mechanisms if m["candidate"] == point.name} >= wanted, point.name


# (map · point · stage … · Δ ± half-width (adjusted ± half-width) · Holm verdict), as the README, docs/ or
# the notebooks cite the map
MAP_CITATION = re.compile(
    r"map · ((?:CIL|DIL): [^·]+?) · stage ([^·]+?) · ([+−-]\d+\.\d\d ± \d+\.\d\d) \(adjusted ± (\d+\.\d\d)\) · "
    r"Holm: ([^;()]+?)(?=[;)])"
)


def test_every_citation_of_the_map_is_its_row():
    """Each (map · point · stage · Δ (adjusted) · Holm: verdict) in README.md, docs/*.md and notebooks 00, 06 and 09
    is that row of the shipped map: its interval, adjusted interval and Holm verdict."""
    runs = json.loads((ROOT / "benchmarks" / "regime_map" / "effects.json").read_text())
    rows = {(e["point"], e["effect"]): e for e in regime.effects(runs, regime.GRID)}
    texts = [p.read_text() for p in (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))] + [
        "".join("".join(c["source"]) for c in json.loads((ROOT / "notebooks" / f"{n}.ipynb").read_text())["cells"])
        for n in ("00_tour", "06_ablation_lab", "09_regime_map")
    ]
    cited = [c for text in texts for c in MAP_CITATION.findall(" ".join(text.split()))]
    assert len(cited) >= 3, cited
    for point, effect, delta, adjusted, verdict in cited:
        row = rows[(point, effect)]
        assert delta.replace("−", "-") == f"{100 * row['mean']:+.2f} ± {100 * row['half_width']:.2f}", (point, effect)
        assert adjusted == f"{100 * row['adjusted_half_width']:.2f}", (point, effect)
        assert verdict.strip() == regime.VERDICT_WORDS.get(row["verdict_holm"], row["verdict_holm"]), (point, effect)


def test_the_numbers_of_the_results_page_on_the_map_are_the_maps():
    """docs/results.md's regime section: every number outside a citation (a mechanism's mean) is printed in
    benchmarks/regime_map.md, sign aside (the page says "5.944 points below" where the map says -5.944)."""
    page = (ROOT / "docs" / "results.md").read_text()
    section = " ".join(page[page.index("## When does each stage help?") : page.index("## Caveats the runs teach")].split())
    plain = MAP_CITATION.sub(" ", section)
    numbers = re.findall(r"(?<![\w.±-])\d+\.\d{3}(?![\w.])", plain)
    assert len(numbers) >= 10, numbers
    table = (ROOT / "benchmarks" / "regime_map.md").read_text().replace("-", " ")
    assert [n for n in numbers if f" {n} " not in table] == []


def test_share_rho_from_the_models_already_trained_is_setting_measurements_own():
    """`mechanisms` reuses its tangent models of tasks 0 and 1 for share ρ; fisher_compare.setting_measurements,
    which trains them itself, gives the same number."""
    from holomerge_lab.analysis.fisher_compare import setting_measurements
    from holomerge_lab.experiment.pipeline import prepare

    config = regime.SMOKE_GRID[1].config(0, regime.SMOKE_BASE)
    own = setting_measurements(prepare(config, progress=False), config)["share ρ (v vs true)"]
    assert regime.mechanisms(config)["share ρ (v vs true)"] == pytest.approx(own, abs=1e-12)
