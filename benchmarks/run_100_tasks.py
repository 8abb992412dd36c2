"""The 100-domain rotated-mnist run (quick preset, small domains): time and joint accuracy after every task.

    python benchmarks/run_100_tasks.py [--tasks 100] [--out benchmarks/rotated_mnist_100_tasks.json]

Notebook 07 reads the JSON it writes.
"""

import argparse
import json
import os
import sys
from pathlib import Path

from holomerge_lab.analysis.bench import long_run

SETTINGS = dict(train_per_task=200, test_per_task=100)

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "rotated_mnist_100_tasks.json")
    args = parser.parse_args()
    record = long_run(args.tasks, **SETTINGS)
    threads = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " if "OMP_NUM_THREADS" in os.environ else ""
    record["command"] = threads + "python " + " ".join(sys.argv)
    args.out.write_text(json.dumps(record, indent=1))
    joint = record["result"]["joint_accuracy"]
    print(
        f"{args.tasks} tasks in {record['run_s']:.0f} s (+{record['prepare_s']:.0f} s prepare); "
        f"joint accuracy after task 1/10/50/{args.tasks}: "
        f"{joint[0]:.3f} {joint[min(9, len(joint) - 1)]:.3f} {joint[min(49, len(joint) - 1)]:.3f} {joint[-1]:.3f}"
    )
