"""The helpers notebooks 00 and 06 read runs through: per-seed values by row, and each stage's on / off sides."""

import itertools

import numpy as np
import pytest

from holomerge_lab.analysis import evidence, reading


def _run(label: str, seed: int, acc: float, stages: dict | None = None) -> dict:
    return {"label": label, "seed": seed, "acc": acc, "stages": stages or {"pre": True, "during": True, "post": True}}


def test_seed_values_are_each_rows_metric_by_seed():
    runs = [_run(label, seed, 0.1 * k + 0.01 * seed) for seed in (0, 1, 2) for k, label in enumerate(("a", "b"))]
    values = evidence.seed_values(runs)
    assert list(values) == ["a", "b"]
    assert values["b"] == {0: pytest.approx(0.1), 1: pytest.approx(0.11), 2: pytest.approx(0.12)}
    said = reading.difference(values["b"], values["a"], "b", "a")
    assert said.startswith("b − a = +10.00 points ± 0.00")  # identical per-seed gaps: no spread


def test_stage_on_off_sides_are_the_grid_means_and_give_the_main_effect():
    rng = np.random.default_rng(0)
    runs, table = [], {}
    for seed in (0, 1, 2):
        for pre, during, post in itertools.product((True, False), repeat=3):
            acc = 0.6 + 0.05 * pre - 0.02 * during + 0.01 * pre * post + 0.01 * rng.standard_normal()
            table[seed, pre, during, post] = acc
            runs.append(_run("x", seed, acc, {"pre": pre, "during": during, "post": post}))
    sides = evidence.stage_on_off(runs)
    mains = {e["other"]: e["effect"] for e in evidence.stage_effects(runs)}
    for i, stage in enumerate(("pre", "during", "post")):
        on, off = sides[stage]
        for seed in (0, 1, 2):  # the mean of the four cells with the stage on (off), computed apart
            cells = {state: [a for (s, *key), a in table.items() if s == seed and key[i] == state] for state in (1, 0)}
            assert on[seed] == pytest.approx(np.mean(cells[1])) and off[seed] == pytest.approx(np.mean(cells[0]))
        assert np.mean([on[s] - off[s] for s in on]) == pytest.approx(mains[stage].interval.mean)
    with pytest.raises(ValueError, match="7 of the 8"):
        evidence.stage_on_off(runs[1:])
