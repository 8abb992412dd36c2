"""Binder holds a session in 2 GiB: notebooks 00 and 06 run under that cap in fast mode (every cell live, small) and in
normal mode (a reader's default: the heavy values from the shipped results), from a fresh cache folder (a new
session's), with the peak memory of the whole process tree, kernel included, below it."""

import sys
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest
from pool_support import beside, one_thread

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import binder_memory  # noqa: E402

NOTEBOOKS = Path(__file__).parent.parent / "notebooks"


@pytest.fixture(scope="session")
def measured(request, tmp_path_factory) -> Iterator[dict[str, Future]]:
    """Each notebook's measurement, in its own folders, two at a time (tests/pool_support.py)."""

    def measure(name: str, fast: bool) -> dict:
        folder = tmp_path_factory.mktemp(f"binder-{name[:2]}-{'fast' if fast else 'normal'}")
        env = {**one_thread(), "HOLOMERGE_CACHE": str(folder / "cache")}
        if not fast:  # normal mode must not quietly compute a heavy value live
            env["HOLOMERGE_SHIPPED_ONLY"] = "1"
        return binder_memory.measure(NOTEBOOKS / name, folder, fast=fast, env=env)

    with beside(request, {"test_runs_within_binders_memory_cap": measure}) as futures:
        yield futures


@pytest.mark.notebooks
@pytest.mark.parametrize("fast", [True, False], ids=["fast", "normal"])
@pytest.mark.parametrize("name", ["00_tour.ipynb", "06_ablation_lab.ipynb"])
def test_runs_within_binders_memory_cap(name, fast, measured, request):
    result = measured[request.node.nodeid].result()
    print(result)  # the numbers docs/colab_and_binder.md quotes
    assert not result["oom_killed"], f"{name} needed more than {result['cap_mib']} MiB: {result}"
    assert result["returncode"] == 0, result["stderr_tail"]
    assert result["peak_tree_rss_mib"] < result["cap_mib"], result
    assert result["peak_tree_rss_mib"] > 100, result  # the sampler saw the kernel: torch alone is more
