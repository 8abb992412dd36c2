"""Servers and a headless browser for the browser tests: Debian's chromium driven by playwright, never a download.

A server runs in its own process group on 127.0.0.1 with a random token and a free port, in fast mode and offline;
leaving the `serve` block kills the whole group (the server and every kernel it started).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]  # fmt: skip
BIN = Path(sys.executable).parent  # the venv's jupyter and voila
ROOT = Path(__file__).parent.parent
OUTPUT = ROOT / "test-output" / "browser"  # git-ignored; screenshots land here


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_listening(port: int, process: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"server not listening after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@contextmanager
def serve(command: Sequence[str], port: int, workdir: Path, *, timeout: float = 180) -> Iterator[None]:
    """Run `command` (a Jupyter server) until it listens on `port`; on leaving, kill its process group."""
    env = {
        **os.environ, "HOLOMERGE_FAST": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
        "JUPYTER_CONFIG_DIR": str(workdir / "config"), "JUPYTER_RUNTIME_DIR": str(workdir / "runtime"),
        "IPYTHONDIR": str(workdir / "ipython"),
    }  # fmt: skip
    log = workdir / "server.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            list(command), cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_until_listening(port, process, log, timeout)
        yield
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                continue
            if sig == signal.SIGTERM:  # the server is gone; its kernels may not be
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            break


def token() -> str:
    return secrets.token_hex(16)


@contextmanager
def browser_page(workdir: Path):
    """A page in a fresh headless chromium profile (1400×1600: the panel's table and figure fit), closed on leaving."""
    if not CHROMIUM.exists():
        pytest.fail(
            "the browser tests need Debian's chromium at /usr/bin/chromium: `make test` installs it as root"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(workdir / "profile"), executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1400, "height": 1600},
        )  # fmt: skip
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


def screenshot(page, name: str) -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / f"{name}.png"
    figure = page.locator(".hm-figure")
    if figure.count():  # JupyterLab scrolls inside the notebook, not the page
        figure.first.scroll_into_view_if_needed()
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path
