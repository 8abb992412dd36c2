"""The toolkit's diagonal Fisher against BackPACK's on the same model and inputs; writes bench_fisher_backpack.json.

    OMP_NUM_THREADS=1 python benchmarks/bench_fisher_backpack.py [rounds]

The embedded EfficientNet-Lite0 top with a task's frozen cosine head, on 256 of the task's trunk features: split-animal
(2 classes) and rotated-mnist (10 classes). True Fisher: `diagonal_fisher(kind="true")` against DiagGGNExact; empirical:
`kind="empirical"` against SumGradSquared. Timed in float32 (the pipeline's precision), the two sides interleaved
round by round in one process (a shared machine's noise falls on both); compared in float64.
"""

import copy
import json
import sys
from pathlib import Path

import torch
from backpack_peer import backpack_fisher, plain_top

from holomerge_lab import bench
from holomerge_lab.fisher import diagonal_fisher, exact_routes
from holomerge_lab.heads import TaskLogits
from holomerge_lab.pipeline import RunConfig, prepare, task_objective

EXAMPLES = 256
CASES = {"split-animal": 2, "rotated-mnist": 10}  # stream -> classes of its first task


def largest_relative_difference(ours: dict, reference: dict) -> float:
    largest = max(float(v.abs().max()) for v in reference.values())
    return max(float((ours[n] - reference[n]).abs().max()) for n in reference) / largest


def compare(stream: str, rounds: int) -> dict:
    tasks = 1 if stream == "rotated-mnist" else 5
    prep = prepare(RunConfig(stream=stream, tasks=tasks, train_per_task=EXAMPLES, test_per_task=10), progress=False)
    _, inputs, labels = task_objective(prep, 0, tangent=False)
    out = {"classes": int(prep.heads[0].shape[0]), "examples": len(inputs)}
    for dtype in (torch.float32, torch.float64):
        top = copy.deepcopy(prep.backbone.top).to(dtype)
        head = prep.heads[0].to(dtype)
        model = TaskLogits(top, head, prep.config.logit_scale, prep.center)
        plain = plain_top(top, head, prep.config.logit_scale, prep.center)
        x = inputs.to(dtype)
        assert torch.equal(plain(x), model(x))
        names = {id(p): n for n, p in model.named_parameters()}
        out["routes"] = sorted(set(exact_routes(model, x[:8]).values()))
        for kind in ("true", "empirical"):
            row = out.setdefault(kind, {})

            def ours():
                return diagonal_fisher(model, x, labels, kind)

            def theirs():
                return backpack_fisher(plain, x, labels, kind, names)

            if dtype == torch.float64:
                row["float64_relative_difference"] = largest_relative_difference(ours(), theirs())
            else:
                ours_s, backpack_s, ratio = bench._interleaved(ours, theirs, rounds)
                row.update(ours_s=ours_s, backpack_s=backpack_s, backpack_over_ours=ratio)
    return out


if __name__ == "__main__":
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    before = bench.machine()
    result = {stream: compare(stream, rounds) for stream in CASES}
    record = {
        "command": "OMP_NUM_THREADS=1 python benchmarks/bench_fisher_backpack.py" + (f" {rounds}" if rounds != 5 else ""),
        "machine": before, "load_average_after": bench.machine()["load_average"], "fisher_backpack": result,
    }  # fmt: skip
    Path(__file__).with_name("bench_fisher_backpack.json").write_text(json.dumps(record, indent=1, default=str))
    print(json.dumps(result, indent=1, default=str))
