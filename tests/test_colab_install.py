"""The Colab cell's install, run for real: exactly its commands into a fresh virtual environment (the repository's
address swapped for this checkout), then notebook 00 in fast mode on that environment's Python, then Binder's
postBuild there. Minutes (torch comes from the machine's wheel cache): the install starts in the background when the
session collects this test (colab_support.py, conftest.py); one test.

It clones the checkout's committed HEAD, as Colab clones the repository: uncommitted changes are not in it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import colab_support
import pytest
from colab_support import ROOT, TOUR, colab_commands, sync_links


def run(command: list[str] | str, env: dict, cwd: Path, timeout: int) -> str:
    done = subprocess.run(command, env=env, cwd=cwd, shell=isinstance(command, str), capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
    assert done.returncode == 0, f"{command} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_every_notebook_has_the_same_install_commands():
    paths = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert {tuple(colab_commands(p)) for p in paths} == {tuple(colab_commands(TOUR))}


@pytest.mark.install
def test_colab_cell_installs_what_the_tour_needs(tmp_path):
    if not (ROOT / ".git").exists():
        pytest.fail(f"{ROOT} is not a git checkout: this test clones it as Colab clones the repository")
    if subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout.strip():
        print("note: the working tree has uncommitted changes; the clone (and this test) sees only HEAD")
    install = colab_support.start()  # begun at collection; here only if this test was not collected first
    url = sync_links.repository()
    assert all(url not in c for c in install.commands)
    assert any(ROOT.name in c or "file://" in c for c in install.commands)
    install_s = install.wait()
    venv, content, env, cache = install.venv, install.content, install.env, install.folder / "cache"

    python = str(venv / "bin" / "python")
    facts = json.loads(run([python, "-c", (
        "import importlib.util as u, json, torch, holomerge_lab;"
        "print(json.dumps([torch.__version__, holomerge_lab.__file__, u.find_spec('animal_mnist') is None,"
        " u.find_spec('tensorflow') is None]))"
    )], env, content, 300).strip().splitlines()[-1])  # fmt: skip
    assert facts[0].startswith("2.14.1"), facts
    assert str(venv) in facts[1], f"the kernel would import {facts[1]}, not the installed toolkit"
    assert facts[2] and facts[3], "animal-mnist (and with it TensorFlow) must not be installed"

    kernels = tmp_path / "jupyter" / "kernels" / "colab-fresh"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "fresh venv", "language": "python", "env": {"HOLOMERGE_FAST": "1"},
    }))  # fmt: skip
    clone = next(p for p in content.iterdir() if (p / "notebooks" / TOUR.name).exists())
    notebook_env = {**env, "JUPYTER_PATH": str(tmp_path / "jupyter"), "HOLOMERGE_FAST": "1"}
    notebook = clone / "notebooks" / TOUR.name  # -P: the clone in this folder is not the package to import
    out = run([sys.executable, "-P", "-m", "holomerge_lab.tour.run_notebook", str(notebook), "--cwd", str(content),
               "--kernel", "colab-fresh"], notebook_env, content, 900)  # fmt: skip
    notebook_s = float(out.split()[-1])
    # The animal silhouettes came from the pinned wheel on PyPI, checked by its sha256 (the real online path).
    assert (cache / "downloads" / "animal_mnist-0.4-py3-none-any.whl").exists()

    # Binder's postBuild, by the same install path, in the same environment (run from the repository's root).
    binder_cache = tmp_path / "binder-cache"
    run(["bash", "binder/postBuild"], {**env, "HOLOMERGE_CACHE": str(binder_cache)}, clone, 900)
    assert any(p.name.startswith("animal-mnist") for p in binder_cache.iterdir())
    print(f"fresh-venv install {install_s:.0f} s (beside the rest of the suite), notebook 00 (fast) {notebook_s:.1f} s")
    install.remove()
