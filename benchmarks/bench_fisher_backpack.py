"""The toolkit's diagonal Fisher against BackPACK's on the same model and inputs; writes bench_fisher_backpack.json.

    OMP_NUM_THREADS=1 PYTHONPATH=benchmarks python benchmarks/bench_fisher_backpack.py [rounds]

- The embedded EfficientNet-Lite0 top with a task's frozen cosine head, on 256 of the task's trunk features:
  split-animal (2 classes) and rotated-mnist (10 classes). True Fisher: `diagonal_fisher(kind="true")` against
  DiagGGNExact; empirical: `kind="empirical"` against SumGradSquared (backpack_peer.py adds the ReLU6, spatial-mean
  and cosine-head derivatives BackPACK lacks). Timed in float32 (the pipeline's precision), compared in float64.
- The tiny open_clip top (tests/test_clip.py's model): BackPACK has no extension for LayerNorm or
  MultiheadAttention, so it is timed against the toolkit's per-example (vmap) route instead, and what BackPACK
  leaves out is recorded.
- The two exact routes for a weight (pairs of positions, per-example gradients) on the top's layer shapes: the
  measurements behind fisher_ops.PER_EXAMPLE_OVERHEAD.

Each pair of sides is timed interleaved, round by round, in one process, so a shared machine's noise falls on both.
"""

import copy
import functools
import json
import sys
import time
import warnings
from pathlib import Path

import torch
from backpack import backpack, extend
from backpack.extensions import SumGradSquared
from backpack_peer import backpack_fisher, plain_top
from torch import nn

from holomerge_lab.analysis import bench
from holomerge_lab.experiment.pipeline import RunConfig, prepare
from holomerge_lab.experiment.training import task_objective
from holomerge_lab.method import fisher_ops
from holomerge_lab.method.fisher import diagonal_fisher, exact_routes, functional_diagonal_fisher
from holomerge_lab.models.heads import TaskLogits

EXAMPLES = 256
CASES = {"split-animal": 2, "rotated-mnist": 10}  # stream -> classes of its first task
KINDS = ("true", "empirical")


def largest_relative_difference(ours: dict, reference: dict) -> float:
    largest = max(float(v.abs().max()) for v in reference.values())
    return max(float((ours[n] - reference[n]).abs().max()) for n in reference) / largest


def effnet_against_backpack(stream: str, rounds: int) -> dict:
    tasks = 1 if stream == "rotated-mnist" else 5
    config = RunConfig(stream=stream, tasks=tasks, train_per_task=EXAMPLES, test_per_task=10)
    prep = prepare(config, progress=False)
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
        for kind in KINDS:
            ours = functools.partial(diagonal_fisher, model, x, labels, kind)
            theirs = functools.partial(backpack_fisher, plain, x, labels, kind, names)
            _measure(out.setdefault(kind, {}), ours, theirs, dtype, rounds, "backpack")
    return out


def _measure(row: dict, ours, theirs, dtype: torch.dtype, rounds: int, peer: str) -> None:
    """float64: how far apart the two Fishers are; float32: their times, interleaved, and the ratio peer / ours."""
    if dtype == torch.float64:
        row["float64_relative_difference"] = largest_relative_difference(ours(), theirs())
    else:
        ours_s, peer_s, ratio = bench._interleaved(ours, theirs, rounds)
        row.update({"ours_s": ours_s, f"{peer}_s": peer_s, f"{peer}_over_ours": ratio})


def backpack_coverage(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict:
    """How many trainable parameters BackPACK's SumGradSquared leaves without a result on `model`."""
    extended = extend(copy.deepcopy(model))
    with warnings.catch_warnings(), backpack(SumGradSquared()):
        warnings.simplefilter("ignore")
        extend(nn.CrossEntropyLoss())(extended(x), y).backward()
    params = [(n, p) for n, p in extended.named_parameters() if p.requires_grad]
    missing = [n for n, p in params if not hasattr(p, "sum_grad_squared")]
    return {"parameters": len(params), "without_result": len(missing), "examples_without": missing[:3]}


def clip_against_per_example(rounds: int) -> dict:
    prep = bench.one_task("tiny-clip", examples=EXAMPLES, lr=1e-4)
    _, x, labels = task_objective(prep, 0, tangent=False)
    size = (
        prep.backbone.top.size
    )  # at the tower's size: clip_input's resize cannot run inside the reference's vmap
    x = torch.nn.functional.interpolate(x.double(), size=(size, size)).round().to(x.dtype)
    out = {"classes": int(prep.heads[0].shape[0]), "examples": len(x)}
    for dtype in (torch.float32, torch.float64):
        model = TaskLogits(copy.deepcopy(prep.backbone.top).to(dtype), prep.heads[0].to(dtype), 100.0, None)
        params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}

        def logits(p, v, model=model):
            return torch.func.functional_call(model, p, (v,))

        routes = exact_routes(model, x[:8])
        out["routes"] = {r: sum(v == r for v in routes.values()) for r in sorted(set(routes.values()))}
        for kind in KINDS:
            ours = functools.partial(diagonal_fisher, model, x, labels, kind)
            reference = functools.partial(functional_diagonal_fisher, logits, params, x, labels, kind)
            _measure(out.setdefault(kind, {}), ours, reference, dtype, rounds, "per_example")
    out["backpack_sum_grad_squared"] = backpack_coverage(model.float(), x[:16], labels[:16])
    return out


def weight_routes(rounds: int) -> list[dict]:
    """Both exact routes of `weight_squares` on 64 examples of the top's 1×1-convolution shapes (S = positions)."""
    rows = []
    overhead = fisher_ops.PER_EXAMPLE_OVERHEAD
    for inputs, outputs, positions in ((192, 1152, 4), (320, 1280, 4), (320, 1280, 16), (320, 1280, 49)):
        x = torch.randn(64, 1, positions, inputs)
        for classes in (1, 2, 10):
            d = torch.randn(classes, 64, 1, positions, outputs)

            def route(forced, d=d, x=x):
                fisher_ops.PER_EXAMPLE_OVERHEAD = forced
                began = time.perf_counter()
                fisher_ops.weight_squares(d, x)
                return time.perf_counter() - began

            pair = [route(10**9) for _ in range(rounds)]
            per_example = [route(-(10**9)) for _ in range(rounds)]
            fisher_ops.PER_EXAMPLE_OVERHEAD = overhead
            chosen = (
                "pairs"
                if positions * (positions + 1) // 2 <= classes * (positions + overhead)
                else "per-example"
            )
            rows.append({
                "in": inputs, "out": outputs, "positions": positions, "classes": classes,
                "pairs_ms": 1e3 * min(pair), "per_example_ms": 1e3 * min(per_example), "chosen": chosen,
            })  # fmt: skip
    return rows


if __name__ == "__main__":
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    before = bench.machine()
    result = {stream: effnet_against_backpack(stream, rounds) for stream in CASES}
    result["tiny-clip"] = clip_against_per_example(rounds)
    result["weight_routes"] = weight_routes(3)
    record = {
        "command": "OMP_NUM_THREADS=1 PYTHONPATH=benchmarks python benchmarks/bench_fisher_backpack.py"
        + (f" {rounds}" if rounds != 5 else ""),
        "machine": before, "load_average_after": bench.machine()["load_average"], "fisher_backpack": result,
    }  # fmt: skip
    path = Path(__file__).with_name("bench_fisher_backpack.json")
    path.write_text(json.dumps(record, indent=1, default=str))
    print(json.dumps(result, indent=1, default=str))
