"""The Colab cell's install into a fresh virtual environment, started in the background as soon as the session has
collected its test (tests/conftest.py), so that minutes of pip overlap the rest of the suite; the test waits for it.

The install is exactly the cell's commands (the repository's address swapped for this checkout's committed HEAD, as
Colab clones the repository), run by a shell in the kernel's folder as IPython's `!` runs them. Colab's image already
has ipykernel (and torch); the fresh environment gets ipykernel first, as that image would, and torch through the
toolkit's own requirement."""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).parent.parent
TOUR = ROOT / "notebooks" / "00_tour.ipynb"
_spec = importlib.util.spec_from_file_location("sync_links", ROOT / "scripts" / "sync_links.py")
sync_links = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sync_links)
TIMEOUT_S = 2400  # the whole install, torch's wheel included


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


@dataclass
class Install:
    """A fresh environment being made in `folder` (venv/, content/ the kernel's folder, cache/ the toolkit's)."""

    folder: Path
    commands: list[str]
    process: subprocess.Popen

    @property
    def venv(self) -> Path:
        return self.folder / "venv"

    @property
    def content(self) -> Path:
        return self.folder / "content"

    @property
    def env(self) -> dict:
        return fresh_env(self.folder)

    def wait(self) -> float:
        """Seconds the cell's commands took (measured while the suite ran beside them); fails with pip's output."""
        try:
            code = self.process.wait(TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"the Colab install ran past {TIMEOUT_S} s:\n{self.log()}") from None
        assert code == 0, f"the Colab install failed ({code}):\n{self.log()}"
        began, ended = (float((self.folder / name).read_text()) for name in ("began", "ended"))
        return ended - began

    def log(self) -> str:
        return (self.folder / "install.log").read_text()[-6000:]

    def remove(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)  # gigabytes of torch: never left behind


def fresh_env(folder: Path) -> dict:
    """The environment of a shell or kernel in the fresh venv (no PYTHONPATH or PYTHONHOME of this one)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    venv = folder / "venv"
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env['PATH']}", VIRTUAL_ENV=str(venv),
               HOLOMERGE_CACHE=str(folder / "cache"), HF_HUB_OFFLINE="1", PIP_DISABLE_PIP_VERSION_CHECK="1")  # fmt: skip
    return env


_started: Install | None = None


def start() -> Install:
    """The install, begun once per session (a checkout with no .git cannot be cloned: the test says so)."""
    global _started
    if _started is None:
        folder = Path(tempfile.mkdtemp(prefix="holomerge-colab-"))
        (folder / "content").mkdir()
        url = sync_links.repository()
        commands = [c.replace(url, f"file://{ROOT.resolve()}") for c in colab_commands(TOUR)]
        q = shlex.quote
        script = "\n".join([
            "set -euo pipefail",
            f"{q(sys.executable)} -m venv {q(str(folder / 'venv'))}",
            f"pip install -q {q(pin('ipykernel'))}",  # on Colab's image already
            f"date +%s.%N > {q(str(folder / 'began'))}",
            *commands,
            f"date +%s.%N > {q(str(folder / 'ended'))}",
        ])  # fmt: skip
        with open(folder / "install.log", "w") as log:
            process = subprocess.Popen(["bash", "-c", script], cwd=folder / "content", env=fresh_env(folder),
                                       stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        _started = Install(folder, commands, process)
    return _started


def stop() -> None:
    if _started is not None:
        _started.remove()
