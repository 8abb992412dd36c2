"""Sweeps: the grid is complete, parallel runs equal sequential ones, and Ray (a local instance) gives the same."""

import json

import pytest
from conftest import small_config

from holomerge_lab.analysis.sweep import grid, parse_order, parse_stages, sweep, sweep_table
from holomerge_lab.cli import main
from holomerge_lab.errors import UserError
from holomerge_lab.experiment.pipeline import run

STAGES = [parse_stages("pre,during,post"), parse_stages("during,post")]


def small_grid():
    return grid(
        small_config(steps=3), stages=STAGES, alphas=[0.3, 0.6], orders=[None, [2, 1, 0, 3, 4, 5, 6, 7, 8, 9]]
    )


def test_parsers():
    assert parse_stages("none") == {"pre": False, "during": False, "post": False}
    assert parse_stages("pre,post") == {"pre": True, "during": False, "post": True}
    assert parse_order("default") is None and parse_order("1,0") == [1, 0]
    with pytest.raises(UserError, match="pre, during, post"):
        parse_stages("pre,middle")
    with pytest.raises(UserError, match="comma list"):
        parse_order("a,b")


def test_local_sweep_is_complete_and_equals_sequential_runs():
    configs = small_grid()
    assert len(configs) == 8
    results = sweep(configs, workers=2)
    table = sweep_table(results)
    assert len(table) == 8
    coordinates = {(r["stages"], r["alpha"], r["order"]) for r in table}
    assert len(coordinates) == 8  # every cell of the grid, once
    for config, result in zip(configs[:2], results[:2], strict=True):  # same numbers as a run in this process
        alone = run(config, progress=False)
        assert result["acc_matrix"] == alone.to_json()["acc_matrix"]


def test_ray_sweep_on_a_local_instance():
    ray = pytest.importorskip("ray", reason="ray is not installed (requirements-dev.txt pins it)")
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        configs = small_grid()[:3]
        results = sweep(configs, ray_address="auto")
        local = sweep(configs, workers=1)
    finally:
        ray.shutdown()
    assert [r["acc_matrix"] for r in results] == [r["acc_matrix"] for r in local]
    assert len(sweep_table(results)) == 3


def test_cli_sweep_writes_one_json(tmp_path, capsys):
    argv = [
        "sweep", "--stream", "split-digits", "--tasks", "2", "--train-per-task", "40", "--test-per-task", "20",
        "--steps", "2", "--batch-size", "16", "--alphas", "0.4", "0.5", "--stages", "pre,during,post", "none",
        "--workers", "1", "--out", str(tmp_path),
    ]  # fmt: skip
    assert main(argv) == 0
    results = json.loads((tmp_path / "sweep.json").read_text())
    assert len(results) == 4
    assert "alpha" in capsys.readouterr().out
    assert main(argv) == 2  # no overwrite without --force


def test_cli_sweep_over_seeds_prints_one_interval_row_per_grid_point(tmp_path, capsys):
    argv = [
        "sweep", "--stream", "split-digits", "--tasks", "2", "--train-per-task", "40", "--test-per-task", "20",
        "--steps", "2", "--batch-size", "16", "--alphas", "0.4", "0.6", "--seeds", "0", "1", "--workers", "1",
    ]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "over the seeds" in printed and "α=0.4" in printed and "α=0.6" in printed
    summary = printed.split("over the seeds")[1]
    assert summary.count(" 2 ") >= 2 and "±" in summary  # n = 2 on both grid points


def test_an_axis_left_out_keeps_the_base_configs_value():
    base = small_config(alpha=0.3, seed=4, order=[1, 0, 2, 3, 4, 5, 6, 7, 8, 9])
    (config,) = grid(base)
    assert (config.alpha, config.seed, config.order) == (0.3, 4, [1, 0, 2, 3, 4, 5, 6, 7, 8, 9])
