"""Binder holds a session in 2 GiB: notebooks 00 and 06 run under that cap in fast mode (every cell live, small) and in
normal mode (a reader's default: the heavy values from the shipped results), from a fresh cache folder (a new
session's), with the peak memory of the whole process tree, kernel included, below it."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import binder_memory  # noqa: E402

NOTEBOOKS = Path(__file__).parent.parent / "notebooks"


@pytest.mark.notebooks
@pytest.mark.parametrize("fast", [True, False], ids=["fast", "normal"])
@pytest.mark.parametrize("name", ["00_tour.ipynb", "06_ablation_lab.ipynb"])
def test_runs_within_binders_memory_cap(name, fast, tmp_path, monkeypatch):
    monkeypatch.setenv("HOLOMERGE_CACHE", str(tmp_path / "cache"))
    if not fast:  # normal mode must not quietly compute a heavy value live
        monkeypatch.setenv("HOLOMERGE_SHIPPED_ONLY", "1")
    result = binder_memory.measure(NOTEBOOKS / name, tmp_path, fast=fast)
    print(result)  # the numbers the README quotes
    assert not result["oom_killed"], f"{name} needed more than {result['cap_mib']} MiB: {result}"
    assert result["returncode"] == 0, result["stderr_tail"]
    assert result["peak_tree_rss_mib"] < result["cap_mib"], result
    assert result["peak_tree_rss_mib"] > 100, result  # the sampler saw the kernel: torch alone is more
