"""Measurements behind the toolkit's claims of speed and constant memory, each a plain function returning a dict.

Ratios are taken in one process, with the two sides interleaved round by round, so that a shared machine's noise
falls on both alike; `machine()` records where and under what load they were taken. `holomerge-lab bench` runs them
all; benchmarks/RESULTS.md records the results with their commands.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import json
import multiprocessing
import os
import platform
import resource
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import UserError
from ..experiment.config import METHODS, RunConfig
from ..experiment.evaluation import Prepared
from ..experiment.pipeline import prepare, run
from ..experiment.training import fine_tune_task, task_objective
from ..method.fisher import diagonal_fisher
from ..models import features
from ..models.heads import TaskLogits

# The methods whose carried state is Θ(1) in the number of tasks: all but TIES store-all, which keeps every task
# vector.
CONSTANT_STATE_METHODS = tuple(m for m in METHODS if m != "ties-store-all")


def machine() -> dict:
    """Where a measurement ran: cores, CPU model, torch version, date, and the load average at that moment."""
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(), "cpu": model, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "date": datetime.datetime.now().isoformat(timespec="seconds"), "load_average": os.getloadavg(),
    }  # fmt: skip


def _interleaved(
    a: Callable[[], object], b: Callable[[], object], rounds: int, *, warm_up: bool = True
) -> tuple[float, float, float]:
    """Median seconds of `a` and of `b`, and the median of the per-round ratios b/a, after one warm-up of each."""
    if warm_up:
        a(), b()
    times_a, times_b = [], []
    for _ in range(rounds):
        began = time.perf_counter()
        a()
        times_a.append(time.perf_counter() - began)
        began = time.perf_counter()
        b()
        times_b.append(time.perf_counter() - began)
    ratio = statistics.median(y / x for x, y in zip(times_a, times_b, strict=True))
    return statistics.median(times_a), statistics.median(times_b), ratio


def one_task(backbone: str = "effnet-lite0", examples: int = 1000, **overrides) -> Prepared:
    """The first rotated-mnist domain (upright digits), `examples` training images, prepared on `backbone`."""
    config = RunConfig(
        stream="rotated-mnist",
        tasks=1,
        train_per_task=examples,
        test_per_task=100,
        backbone=backbone,
        **overrides,
    )
    return prepare(config, progress=False)


def linear_step_ratio(prep: Prepared, *, steps: int = 10, rounds: int = 5) -> dict:
    """Seconds per fine-tuning step (forward, backward, AdamW update; batch size of the preset), standard vs
    tangent, on task 0 of `prep`: the whole of `fine_tune_task` over `steps` steps, divided by `steps`."""
    config = dataclasses.replace(prep.config, steps=steps)

    def standard():
        fine_tune_task(prep, 0, tangent=False, config=config)

    def tangent():
        fine_tune_task(prep, 0, tangent=True, config=config)

    standard_s, tangent_s, ratio = _interleaved(standard, tangent, rounds)
    return {
        "backbone": prep.config.backbone, "batch_size": prep.config.batch_size, "standard_ms": 1e3 * standard_s / steps,
        "tangent_ms": 1e3 * tangent_s / steps, "ratio": ratio,
    }  # fmt: skip


def fisher_by_loop(model: nn.Module, inputs: Tensor) -> dict[str, Tensor]:
    """The plain reference: per example one forward pass, then one backward per class through it, Σ_c p_c g_c²."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    for x in inputs:
        log_probs = torch.log_softmax(model(x.unsqueeze(0)), -1)[0]
        probs = log_probs.detach().exp()
        for c in range(len(log_probs)):
            grads = torch.autograd.grad(
                log_probs[c], list(params.values()), retain_graph=c < len(log_probs) - 1
            )
            for n, g in zip(params, grads, strict=True):
                total[n] += probs[c] * g.square()
    return {n: v / len(inputs) for n, v in total.items()}


def fisher_speedup(prep: Prepared, *, rounds: int = 1) -> dict:
    """The toolkit's exact true Fisher (`diagonal_fisher`) of the top on all of task 0's training features against
    `fisher_by_loop`: the speed-up in float32 (the pipeline's precision), and the largest difference between the
    two results in float64, where rounding does not hide a wrong formula (in float32 they differ by rounding)."""
    _, inputs, _ = task_objective(prep, 0, tangent=False)
    model = TaskLogits(prep.backbone.top, prep.heads[0], prep.config.logit_scale, prep.center)
    results = {}

    def loop():
        results["loop"] = fisher_by_loop(model, inputs)

    def toolkit():
        results["toolkit"] = diagonal_fisher(model, inputs)

    loop_s, toolkit_s, ratio = _interleaved(loop, toolkit, rounds, warm_up=False)
    out = {
        "examples": len(inputs), "classes": int(prep.heads[0].shape[0]),
        "parameters": sum(v.numel() for v in results["loop"].values()), "loop_s": loop_s, "toolkit_s": toolkit_s,
        "speedup": 1.0 / ratio, "float32": _difference(results["loop"], results["toolkit"]),
    }  # fmt: skip
    model64 = copy.deepcopy(model).double()
    out["float64"] = _difference(
        fisher_by_loop(model64, inputs.double()), diagonal_fisher(model64, inputs.double())
    )
    return out


def _difference(reference: dict[str, Tensor], other: dict[str, Tensor]) -> dict[str, float]:
    """The largest absolute difference, and that over the largest reference value."""
    largest = max(float(v.abs().max()) for v in reference.values())
    difference = max(float((reference[n] - other[n]).abs().max()) for n in reference)
    return {"max_abs_difference": difference, "max_relative_difference": difference / largest}


def trunk_cache(config: RunConfig) -> dict:
    """`prepare` on an empty feature cache, then again on the warm one, counting the images the trunk ran on."""
    ran = []
    original = features._run_trunk

    def counting(backbone, images, *args, **kwargs):
        ran.append(len(images))
        return original(backbone, images, *args, **kwargs)

    previous = os.environ.get("HOLOMERGE_CACHE")
    out = {}
    with tempfile.TemporaryDirectory() as folder:
        os.environ["HOLOMERGE_CACHE"] = folder
        features._run_trunk = counting
        try:
            for name in ("cold", "warm"):
                ran.clear()
                began = time.perf_counter()
                prepare(config, progress=False)
                out[f"{name}_s"], out[f"{name}_trunk_images"] = time.perf_counter() - began, sum(ran)
        finally:
            features._run_trunk = original
            if previous is None:
                os.environ.pop("HOLOMERGE_CACHE", None)
            else:
                os.environ["HOLOMERGE_CACHE"] = previous
    out["speedup"] = out["cold_s"] / out["warm_s"]
    return out


def _memory_for_tasks(tasks: int, methods: Sequence[str], overrides: dict) -> dict:
    """In a fresh process: run each method on `tasks` rotated-mnist domains; the bytes each carries after every
    task, and the process's resident memory after `prepare` and at its peak (getrusage, in bytes)."""
    torch.set_num_threads(1)
    config = RunConfig(stream="rotated-mnist", tasks=tasks, **overrides)
    prep = prepare(config, progress=False)
    prepared_rss = _rss_bytes()
    carried, peaks = {}, {}
    for method in methods:
        carried[method] = run(dataclasses.replace(config, method=method), prep, progress=False).state_bytes
        peaks[method] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux
    return {
        "tasks": tasks, "carried": carried, "rss_after_prepare": prepared_rss, "peak_rss": peaks[methods[-1]],
        "peak_rss_after_method": peaks,
    }  # fmt: skip


def _rss_bytes() -> int:
    import psutil

    return psutil.Process().memory_info().rss


MEMORY_SETTINGS = dict(
    train_per_task=32, test_per_task=16, steps=2, batch_size=16, align_steps=2, fisher_examples=8
)  # fmt: skip


def memory_by_tasks(
    tasks: Sequence[int] = (5, 20, 50, 100), methods: Sequence[str] = CONSTANT_STATE_METHODS, **overrides
) -> dict:
    """Carried bytes and peak memory for each T, each T in its own fresh process (a process's peak only grows).

    Small per-task sizes and few steps (MEMORY_SETTINGS): what is measured is what the loop keeps, not accuracy."""
    settings = {**MEMORY_SETTINGS, **overrides}
    rows = []
    context = multiprocessing.get_context("spawn")
    for t in tasks:
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            rows.append(pool.submit(_memory_for_tasks, t, tuple(methods), settings).result())
    first, last = rows[0], rows[-1]
    return {
        "settings": settings,
        "rows": rows,
        "carried_bytes_by_tasks": {r["tasks"]: r["carried"]["holistic"][-1] for r in rows if "holistic" in r["carried"]},
        "carried_constant": {
            m: len({b for r in rows for b in r["carried"][m]}) == 1 for m in methods
        },
        "peak_growth": last["peak_rss"] / first["peak_rss"] - 1.0,
    }  # fmt: skip


def quick_run_seconds(stream: str = "split-animal") -> dict:
    """Wall time of the quick-preset holistic run (`holomerge-lab run`'s default), the trunk cache warm."""
    config = RunConfig(stream=stream)
    began = time.perf_counter()
    prep = prepare(config, progress=False)
    prepared_s = time.perf_counter() - began
    result = run(config, prep, progress=False)
    return {"stream": stream, "prepare_s": prepared_s, "run_s": result.seconds, "acc": result.acc}


def notebook_seconds(path: str | Path | None = None) -> dict[str, float]:
    """Per-notebook fast-mode seconds, as tests/test_notebooks.py writes them to HOLOMERGE_NOTEBOOK_TIMINGS."""
    path = Path(path or os.environ.get("HOLOMERGE_NOTEBOOK_TIMINGS", "benchmarks/notebook_timings.tsv"))
    if not path.is_file():
        return {}
    rows = (line.split("\t") for line in path.read_text().splitlines() if "\t" in line)
    return {name: float(seconds) for name, seconds in rows}


def long_run(tasks: int = 100, **overrides) -> dict:
    """The quick-preset holistic run on `tasks` rotated-mnist domains: its result (joint accuracy after every task)
    and wall time, with the machine it ran on."""
    config = RunConfig(stream="rotated-mnist", tasks=tasks, **overrides)
    began = time.perf_counter()
    prep = prepare(config, progress=False)
    prepared_s = time.perf_counter() - began
    result = run(config, prep, progress=False)
    return {
        "machine": machine(),
        "prepare_s": prepared_s,
        "run_s": result.seconds,
        "result": result.to_json(),
    }


def bench(*, memory_tasks: Sequence[int] = (5, 20, 50, 100), rounds: int = 5) -> dict:
    """Every measurement, as one JSON-ready dict (`holomerge-lab bench --json`)."""
    out = {"machine": machine()}
    effnet = one_task("effnet-lite0")
    out["linear_step"] = linear_step_ratio(effnet, rounds=rounds)
    out["linear_step_tiny_clip"] = linear_step_ratio(one_task("tiny-clip", lr=1e-4), rounds=rounds)
    out["fisher"] = fisher_speedup(effnet)
    out["trunk_cache"] = trunk_cache(
        RunConfig(stream="split-mnist", tasks=2, train_per_task=500, test_per_task=200)
    )
    out["memory"] = memory_by_tasks(memory_tasks)
    out["quick_run"] = quick_run_seconds()
    out["notebooks"] = notebook_seconds()
    out["linear_step_ratio"] = out["linear_step"]["ratio"]
    out["linear_step_ratio_tiny_clip"] = out["linear_step_tiny_clip"]["ratio"]
    out["fisher_speedup"] = out["fisher"]["speedup"]
    out["carried_bytes_by_tasks"] = out["memory"]["carried_bytes_by_tasks"]
    out["machine_after"] = machine()
    return out


def dumps(results: dict) -> str:
    return json.dumps(results, indent=1, default=str)


SHIPPED = Path(__file__).resolve().parents[2] / "benchmarks"  # the repository's recorded results


def shipped(name: str) -> dict:
    """A recorded result of the repository's benchmarks/ folder (with the command that made it), for a notebook to
    draw what is too slow to rerun live."""
    path = SHIPPED / name
    if not path.is_file():
        raise UserError(f"{path} is not here: the shipped results live in the repository's benchmarks/ folder "
                        "(clone the repository, or rerun the command that writes it)")  # fmt: skip
    return json.loads(path.read_text())
