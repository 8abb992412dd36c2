"""Run some of `holomerge-lab bench`'s measurements and write each to benchmarks/bench_<part>.json.

    OMP_NUM_THREADS=1 python benchmarks/run_bench.py linear_step fisher cache memory quick_run

(`holomerge-lab bench --json` runs them all in one go; this runs them one at a time, for a shared machine.)
"""

import json
import sys
from pathlib import Path

from holomerge_lab.analysis import bench

PARTS = {
    "linear_step": lambda: {
        "effnet-lite0": bench.linear_step_ratio(bench.one_task("effnet-lite0")),
        "tiny-clip": bench.linear_step_ratio(bench.one_task("tiny-clip", lr=1e-4)),
    },
    "fisher": lambda: bench.fisher_speedup(bench.one_task("effnet-lite0")),
    "cache": lambda: bench.trunk_cache(
        bench.RunConfig(stream="split-mnist", tasks=2, train_per_task=500, test_per_task=200)
    ),
    "memory": lambda: bench.memory_by_tasks((5, 20, 50, 100), test_per_task=10),
    "quick_run": bench.quick_run_seconds,
}

if __name__ == "__main__":
    for part in sys.argv[1:] or list(PARTS):
        before = bench.machine()
        result = PARTS[part]()
        record = {
            "command": f"OMP_NUM_THREADS=1 python benchmarks/run_bench.py {part}",
            "machine": before, "load_average_after": bench.machine()["load_average"], part: result,
        }  # fmt: skip
        Path(__file__).with_name(f"bench_{part}.json").write_text(json.dumps(record, indent=1, default=str))
        print(part, json.dumps(result, default=str)[:400], flush=True)
