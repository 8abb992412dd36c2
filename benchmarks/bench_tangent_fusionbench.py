"""A tangent fine-tuning step of the toolkit against one of FusionBench's `LinearizedModelWraper`; writes
bench_tangent_fusionbench.json.

    python benchmarks/bench_tangent_fusionbench.py [rounds]

The embedded EfficientNet-Lite0 top on a batch of the quick preset's split-animal trunk features (the batch size of
the preset): one step = the linearized forward, the backward to θ, one AdamW update. Ours is `LinearizedModel`
(one `torch.func.jvp`, attention on the MATH backend); theirs wraps a copy of the same top. A standard step is timed
too, for scale. Sides interleaved round by round in one process (bench._interleaved), so the machine's noise falls
on both; tests/test_linearize.py checks both give the same f_lin bit for bit.
"""

import copy
import json
import os
import sys
from pathlib import Path

import torch
from fusion_bench_peer import linearized_wrapper

from holomerge_lab.analysis import bench
from holomerge_lab.experiment.pipeline import RunConfig, prepare
from holomerge_lab.method.linearize import LinearizedModel

STEPS = 10  # per timed call


def stepper(model: torch.nn.Module, x: torch.Tensor):
    """STEPS fine-tuning steps of `model` on `x` (its output's mean square as the loss: any scalar does)."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def steps() -> None:
        for _ in range(STEPS):
            optimizer.zero_grad()
            model(x).square().mean().backward()
            optimizer.step()

    return steps


if __name__ == "__main__":
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    config = RunConfig(stream="split-animal")
    prep = prepare(config, progress=False)
    top = prep.backbone.top
    x = prep.train_features[0][: config.resolve().batch_size]
    theta0 = {n: p.detach().clone() for n, p in top.named_parameters()}
    ours = stepper(LinearizedModel(copy.deepcopy(top)), x)
    theirs = stepper(linearized_wrapper(top, theta0, theta0), x)
    standard = stepper(copy.deepcopy(top), x)
    before = bench.machine()
    ours_s, theirs_s, theirs_over_ours = bench._interleaved(ours, theirs, rounds)
    standard_s, ours_again_s, ours_over_standard = bench._interleaved(standard, ours, rounds)
    threads = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " if "OMP_NUM_THREADS" in os.environ else ""
    record = {
        "command": threads + "PYTHONPATH=benchmarks python " + " ".join(sys.argv),
        "machine": before, "batch_size": len(x), "rounds": rounds,
        "ours_ms": 1e3 * ours_s / STEPS, "fusion_bench_ms": 1e3 * theirs_s / STEPS,
        "fusion_bench_over_ours": theirs_over_ours, "standard_ms": 1e3 * standard_s / STEPS,
        "ours_over_standard": ours_over_standard,
    }  # fmt: skip
    record["load_average_after"] = os.getloadavg()
    (Path(__file__).parent / "bench_tangent_fusionbench.json").write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record, indent=1))
