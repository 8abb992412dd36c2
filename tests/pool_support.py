"""Notebook runs two at a time, one thread each, for tests that each wait on their own run.

One process per notebook and one thread per process: two processes side by side use both cores through the parts
one process runs on one (imports, kernel start, Python-bound cells), and no OpenMP thread spin-waits for a core
another process holds. Measured: notebooks 02 and 03, 69 s one after the other with two threads each, 50 s side by
side with one; notebook 00 from a fresh cache beside the Colab install, 114 s with two threads, 20 s with one.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor


@contextlib.contextmanager
def beside(request, runs: dict[str, Callable[..., object]]) -> Iterator[dict[str, Future]]:
    """{test node id: the future of `runs[test function](**its parameters)`} for every test this session collected
    that uses the fixture `request` belongs to, in collection order. A test waits for its own with `result()`."""
    pool = ThreadPoolExecutor(2)
    try:
        yield {
            item.nodeid: pool.submit(runs[item.originalname], **item.callspec.params)
            for item in request.session.items
            if request.fixturename in item.fixturenames
        }
    finally:
        pool.shutdown(cancel_futures=True)


def one_thread() -> dict:
    """This process's environment without the HOLOMERGE_ switches a caller may have set (the cache folder kept),
    with one thread per process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOLOMERGE_") or k == "HOLOMERGE_CACHE"}
    return {**env, "OMP_NUM_THREADS": "1"}
