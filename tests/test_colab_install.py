"""The Colab cell's install, run for real: exactly its commands into a fresh virtual environment (the repository's
address swapped for this checkout), then notebook 00 in fast mode on that environment's Python, then Binder's
postBuild there. Minutes (torch comes from the machine's wheel cache); one test.

It clones the checkout's committed HEAD, as Colab clones the repository: uncommitted changes are not in it. Colab's
image already has ipykernel (and torch); the fresh environment gets ipykernel first, as that image would, and
torch through the toolkit's own requirement."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
TOUR = ROOT / "notebooks" / "00_tour.ipynb"
_spec = importlib.util.spec_from_file_location("sync_links", ROOT / "scripts" / "sync_links.py")
sync_links = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sync_links)

def colab_commands(path: Path) -> list[str]:
    """The shell lines (`!...`) of the `if "google.colab"` block of the notebook's first code cell."""
    code = next(c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
    lines = "".join(code["source"]).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith('if "google.colab" in sys.modules:'))
    block = []
    for line in lines[start + 1 :]:
        if not line.startswith((" ", "\t")):
            break
        block.append(line.strip())
    assert block and all(line.startswith("!") for line in block), block
    return [line[1:] for line in block]


def pin(name: str) -> str:
    line = next(li for li in (ROOT / "requirements.txt").read_text().splitlines() if li.startswith(name + "=="))
    return line.split("#")[0].strip()


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
    venv, content, cache = tmp_path / "venv", tmp_path / "content", tmp_path / "cache"
    content.mkdir()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env['PATH']}", VIRTUAL_ENV=str(venv), HOLOMERGE_CACHE=str(cache),
               HF_HUB_OFFLINE="1", PIP_DISABLE_PIP_VERSION_CHECK="1")  # fmt: skip
    run(["pip", "install", "-q", pin("ipykernel")], env, content, 600)  # on Colab's image already

    url = sync_links.repository()
    commands = [c.replace(url, f"file://{ROOT.resolve()}") for c in colab_commands(TOUR)]
    assert all(url not in c for c in commands) and any(ROOT.name in c or "file://" in c for c in commands)
    began = time.perf_counter()
    for command in commands:
        run(command, env, content, 1800)  # as IPython's `!` runs it: a shell, in the kernel's folder
    install_s = time.perf_counter() - began

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
    out = run([sys.executable, "-P", "-m", "holomerge_lab.run_notebook", str(notebook), "--cwd", str(content),
               "--kernel", "colab-fresh"], notebook_env, content, 900)  # fmt: skip
    notebook_s = float(out.split()[-1])
    # The animal silhouettes came from the pinned wheel on PyPI, checked by its sha256 (the real online path).
    assert (cache / "downloads" / "animal_mnist-0.4-py3-none-any.whl").exists()

    # Binder's postBuild, by the same install path, in the same environment (run from the repository's root).
    binder_cache = tmp_path / "binder-cache"
    run(["bash", "binder/postBuild"], {**env, "HOLOMERGE_CACHE": str(binder_cache)}, clone, 900)
    assert any(p.name.startswith("animal-mnist") for p in binder_cache.iterdir())
    print(f"fresh-venv install {install_s:.0f} s, notebook 00 (fast) {notebook_s:.1f} s in it")
    shutil.rmtree(venv, ignore_errors=True)  # gigabytes of torch: not left for pytest's tmp retention
