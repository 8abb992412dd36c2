"""How far a RunConfig travels: the package modules one holistic run passes through, from `run` to the matrix.

    python benchmarks/call_flow.py [--json]

Runs the holistic method (EfficientNet-Lite0, its default) on split-digits (2 tasks, 2 steps) under `sys.setprofile` and records every
call whose caller and callee are functions of holomerge_lab in different modules. It prints the modules entered
(the run's path) and, per module, how many distinct call sites in other modules enter it and how many distinct
calls it makes out of itself (each one a hand-off the flow comes back from). Distinct edges, not call counts: the number does not grow with steps or tasks, so it measures
the layout, not the workload. Prepare is outside the trace (it runs before `run`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict

import holomerge_lab


def _module(frame) -> str | None:
    name = frame.f_globals.get("__name__", "")
    return name if name.startswith("holomerge_lab") else None


def trace_run(run, *args, **kwargs) -> tuple[list[str], dict[str, set[tuple[str, str]]]]:
    """The modules entered during `run(*args, **kwargs)` in first-entry order, and for each the distinct
    (caller module.function, callee function) edges that enter it from another module."""
    order: list[str] = []
    entries: dict[str, set[tuple[str, str]]] = defaultdict(set)

    def profile(frame, event, arg):
        if event != "call":
            return
        callee = _module(frame)
        if callee is None:
            return
        if callee not in order:
            order.append(callee)
        back = frame.f_back
        while back is not None and _module(back) is None:  # through torch or the standard library
            back = back.f_back
        caller = _module(back) if back is not None else None
        if caller is not None and caller != callee:
            entries[callee].add((f"{caller}.{back.f_code.co_name}", frame.f_code.co_name))

    sys.setprofile(profile)
    try:
        run(*args, **kwargs)
    finally:
        sys.setprofile(None)
    return order, entries


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from holomerge_lab.experiment.config import RunConfig
    from holomerge_lab.experiment.pipeline import prepare, run

    config = RunConfig(stream="split-digits", tasks=2, steps=2, align_steps=2,
                       train_per_task=32, test_per_task=16, batch_size=16, seed=0)  # fmt: skip
    prepared = prepare(config, progress=False)
    order, entries = trace_run(run, config, prepared, progress=False)
    report = {
        "version": holomerge_lab.__version__,
        "modules": order,
        "entries": {m: len(entries[m]) for m in order},
        "calls_out": {m: sum(caller.startswith(m + ".") for e in entries.values() for caller, _ in e) for m in order},
        "edges": sum(len(e) for e in entries.values()),
    }
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"{len(order)} modules from run to the accuracy matrix, {report['edges']} distinct cross-module calls:")
        for m in order:
            print(f"  {m:45s} entered from {report['entries'][m]:3d} call sites, calls out {report['calls_out'][m]:3d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
