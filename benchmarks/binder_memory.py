"""Run notebooks as Binder would hold them: under a 2 GiB memory cap, with the peak memory measured.

    python benchmarks/binder_memory.py notebooks/00_tour.ipynb notebooks/06_ablation_lab.ipynb [--full]

Each notebook runs headless (nbclient and its kernel, what a Jupyter server and its kernel are on Binder) in
fast mode unless ``--full``. Two measurements:

- the cap: where this process may make a child of its own memory cgroup (v1 or v2; root on most Linux machines and
  containers), the notebook runs in one limited to the cap, as Binder's container is, and the kernel's
  out-of-memory killer ends a run that needs more (page cache is reclaimed first). That cgroup's own peak (v1
  ``memory.max_usage_in_bytes`` / v2 ``memory.peak``) counts page cache too.
- the peak RSS of the whole process tree (client + kernel + anything they start), sampled every 50 ms from /proc
  through psutil: what the processes themselves held, shared pages counted in each process (an upper bound).

Prints one JSON object per notebook. tests/test_binder_memory.py asserts both stay under the cap in fast mode.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

CAP = 2 * 1024**3
SAMPLE_S = 0.05
CELL_TIMEOUT_S = 90
"""Per cell in fast mode, as tests/test_notebooks.py: a cell that stalls costs this, not more."""


class Cgroup:
    """A child of this process's memory cgroup, limited to `limit` bytes; None from `create` where not writable."""

    def __init__(self, path: Path, v2: bool):
        self.path, self.v2 = path, v2

    @classmethod
    def create(cls, limit: int) -> Cgroup | None:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, own = line.split(":", 2)
            if "memory" in controllers.split(","):
                base, v2 = Path("/sys/fs/cgroup/memory") / own.lstrip("/"), False
                break
        else:
            base, v2 = Path("/sys/fs/cgroup") / _unified(), True
        path = base / f"holomerge-binder-{os.getpid()}-{time.monotonic_ns()}"
        try:
            path.mkdir()
            (path / ("memory.max" if v2 else "memory.limit_in_bytes")).write_text(str(limit))
            if not v2 and (path / "memory.memsw.limit_in_bytes").exists():
                (path / "memory.memsw.limit_in_bytes").write_text(str(limit))  # no escape into swap
        except OSError:
            if path.exists():
                path.rmdir()
            return None
        return cls(path, v2)

    def enter(self) -> None:
        """Move the calling process in (its children follow): run in the child between fork and exec."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def peak(self) -> int | None:
        name = "memory.peak" if self.v2 else "memory.max_usage_in_bytes"
        return int((self.path / name).read_text()) if (self.path / name).exists() else None

    def oom_killed(self) -> bool:
        events = self.path / ("memory.events" if self.v2 else "memory.oom_control")  # both count "oom_kill N"
        for line in events.read_text().splitlines() if events.exists() else []:
            name, _, value = line.partition(" ")
            if name == "oom_kill" and int(value) > 0:
                return True
        return False

    def remove(self) -> None:
        for _ in range(50):  # the last processes may take a moment to leave
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.1)


def _unified() -> str:
    line = next(li for li in Path("/proc/self/cgroup").read_text().splitlines() if li.startswith("0::"))
    return line.split("::", 1)[1].lstrip("/")


def tree_rss(process: psutil.Process) -> int:
    total = 0
    for p in [process, *process.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:  # ended between the listing and the reading
            pass
    return total


def measure(notebook: Path, workdir: Path, fast: bool = True, cap: int = CAP, env: dict | None = None) -> dict:
    """Run `notebook` with `workdir` as its folder (under the cap where a cgroup can be made) and return what was
    measured. The environment is `env` (this process's by default), its cache folder ``HOLOMERGE_CACHE``."""
    env = {**(os.environ if env is None else env), "HF_HUB_OFFLINE": "1"}
    env.pop("HOLOMERGE_FAST", None)
    if fast:
        env["HOLOMERGE_FAST"] = "1"
    group = Cgroup.create(cap)
    began = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-m", "holomerge_lab.tour.run_notebook", str(notebook), "--cwd", str(workdir),
         "--timeout", str(CELL_TIMEOUT_S if fast else 1800)], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=group.enter if group else None,
    )  # fmt: skip
    process, peak = psutil.Process(child.pid), 0
    try:
        while child.poll() is None:
            peak = max(peak, tree_rss(process))
            time.sleep(SAMPLE_S)
        _, err = child.communicate()
        result = {
            "notebook": notebook.name, "fast": fast, "seconds": round(time.perf_counter() - began, 1),
            "returncode": child.returncode, "peak_tree_rss_mib": round(peak / 2**20),
            "cap_mib": cap // 2**20, "cap_enforced_by": f"cgroup {'v2' if group.v2 else 'v1'}" if group else "none",
            "cgroup_peak_mib": round(group.peak() / 2**20) if group and group.peak() is not None else None,
            "oom_killed": group.oom_killed() if group else None, "stderr_tail": err[-2000:] if child.returncode else "",
        }  # fmt: skip
    finally:
        if child.poll() is None:
            child.kill()
        if group:
            group.remove()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--full", action="store_true", help="normal sizes instead of fast mode")
    parser.add_argument("--cap-mib", type=int, default=CAP // 2**20)
    args = parser.parse_args(argv)
    failed = False
    for path in args.notebooks:
        with tempfile.TemporaryDirectory() as workdir:  # whatever a notebook writes lands here, then goes
            result = measure(path.resolve(), Path(workdir), fast=not args.full, cap=args.cap_mib * 2**20)
        print(json.dumps(result), flush=True)
        failed |= result["returncode"] != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
