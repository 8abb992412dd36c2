"""Grids of runs (stages × α × seeds × task orders), in parallel on local cores or on a Ray cluster.

Every run of a grid is an independent `pipeline.run`; they share the disk cache of trunk features, which the parent
process fills once per distinct stream before any worker starts, so no two workers compute the same features.
Each worker keeps one `Prepared` per distinct stream, and runs with one torch thread: parallelism comes from the
processes, and N processes × N threads on N cores would slow every one of them down.

Fine-tuned task models are shared through the disk cache of task_cache.py (`cache_dir()/task-models`), keyed by
the bytes of everything that decides them: runs that differ only in α, `during` or `post` reuse tasks 1 and 2 (and
any later task whose start is unchanged); a rerun of the same grid reuses every task. Two workers that miss the same
entry at once both train it (the write is atomic), which costs time, not correctness.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

import torch

from ..data import cache_dir
from ..errors import UserError
from ..experiment.config import RunConfig
from ..experiment.evaluation import Prepared
from ..experiment.pipeline import prepare, run
from . import evidence

STAGES = ("pre", "during", "post")

# The fields that decide a run's data and trunk features (and so its `Prepared`); everything else is the method's.
DATA_FIELDS = (
    "stream", "tasks", "train_per_task", "test_per_task", "order", "seed", "backbone", "image_size",
    "trainable_from", "pretrained", "data_root", "download", "device", "precision", "center", "preset",
)  # fmt: skip


def parse_stages(text: str) -> dict[str, bool]:
    """'pre,during,post' (all on), 'during,post' (pre off), … or 'none' -> the three stage switches."""
    names = [] if text == "none" else [s.strip() for s in text.split(",") if s.strip()]
    unknown = [n for n in names if n not in STAGES]
    if unknown:
        raise UserError(
            f"unknown stage {unknown[0]!r} in {text!r}; use a comma list of {', '.join(STAGES)}, or none"
        )
    return {s: s in names for s in STAGES}


def parse_order(text: str) -> list[int] | None:
    """'default' -> None (the stream's own order); '4,3,2,1,0' -> [4, 3, 2, 1, 0]."""
    if text == "default":
        return None
    try:
        return [int(i) for i in text.split(",")]
    except ValueError:
        raise UserError(f"a task order is 'default' or a comma list of whole numbers, got {text!r}") from None


def grid(
    base: RunConfig,
    *,
    stages: Sequence[dict[str, bool]] = ({"pre": True, "during": True, "post": True},),
    alphas: Sequence[float | None] = (None,),
    seeds: Sequence[int | None] = (None,),
    orders: Sequence[Sequence[int] | None] = (None,),
) -> list[RunConfig]:
    """Every combination, as validated configs (a bad value fails here, before any work starts)."""
    configs = [
        dataclasses.replace(
            base,
            **stage,
            alpha=base.alpha if alpha is None else alpha,
            seed=base.seed if seed is None else seed,
            order=base.order if order is None else list(order),
        )  # None on an axis: the base config's own value (its flag, or the preset's)
        for stage, alpha, seed, order in itertools.product(stages, alphas, seeds, orders)
    ]
    for c in configs:
        c.resolve()
    return configs


def data_key(config: RunConfig) -> tuple:
    """What decides a run's `Prepared`: runs with equal keys share one."""
    resolved = config.resolve()
    return tuple(str(getattr(resolved, f)) for f in DATA_FIELDS)


_PREPARED: dict[tuple, Prepared] = {}  # per worker process: one Prepared per distinct stream


def run_one(config: RunConfig) -> dict:
    """One run of the grid, in a worker: its result as JSON (plus the grid coordinates)."""
    torch.set_num_threads(1)
    key = data_key(config)
    if key not in _PREPARED:
        _PREPARED.clear()  # keep one: a worker's memory stays that of one stream
        _PREPARED[key] = prepare(config, progress=False)
    result = run(config, _PREPARED[key], progress=False, task_cache=cache_dir() / "task-models").to_json()
    result["grid"] = {"stages": config.stages, "alpha": config.resolve().alpha, "seed": config.resolve().seed,
                      "order": config.order}  # fmt: skip
    return result


def warm_cache(configs: Sequence[RunConfig]) -> int:
    """Compute the trunk features of each distinct stream once, here, before the workers read them from disk."""
    seen = {}
    for c in configs:
        seen.setdefault(data_key(c), c)
    for c in seen.values():
        prepare(c, progress=False)
    return len(seen)


def _init_worker() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


def sweep(
    configs: Sequence[RunConfig], *, workers: int | None = None, ray_address: str | None = None
) -> list[dict]:
    """Run every config; results in the configs' order. Local processes by default (`workers`, default: the
    cores), or Ray tasks of one CPU each when `ray_address` is given ("auto", "local" for a new local instance, or
    a cluster address); a Ray instance already started in this process is used as it is."""
    warm_cache(configs)
    if ray_address is not None:
        return _sweep_ray(configs, ray_address)
    workers = workers or os.cpu_count() or 1
    if workers == 1:
        return [run_one(c) for c in configs]
    with ProcessPoolExecutor(max_workers=min(workers, len(configs)), initializer=_init_worker) as pool:
        return list(pool.map(run_one, configs))


def _sweep_ray(configs: Sequence[RunConfig], address: str) -> list[dict]:
    try:
        import ray
    except ImportError:
        raise UserError(
            "--ray needs Ray: `pip install ray` (see requirements-dev.txt for the tested version)"
        ) from None
    if not ray.is_initialized():
        ray.init(address=None if address == "local" else address, include_dashboard=False)
    remote = ray.remote(num_cpus=1)(run_one)
    return ray.get([remote.remote(c) for c in configs])


def sweep_summary(results: Sequence[dict]) -> list[dict]:
    """One row per grid point over its seeds: mean ± 95 % CI (evidence.summary_table), the point named by its
    method, α and task order."""
    named = []
    for r in results:
        g = r["grid"]
        order = "default" if g["order"] is None else ",".join(map(str, g["order"]))
        named.append({**r, "label": f"{r['label']} α={g['alpha']} order={order}"})
    return evidence.summary_table(evidence.summarize(named))


def sweep_table(results: Sequence[dict]) -> list[dict]:
    """One row per run: its grid coordinates and its metrics."""
    rows = []
    for r in results:
        g = r["grid"]
        stages = ",".join(s for s, on in g["stages"].items() if on) or "none"
        order = "default" if g["order"] is None else ",".join(map(str, g["order"]))
        rows.append({
            "method": r["label"], "stages": stages, "alpha": g["alpha"], "seed": g["seed"], "order": order,
            "ACC (task mean)": round(r["acc_task_mean"], 4), "ACC (pooled)": round(r["acc_pooled"], 4),
            "BWT": round(r["bwt"], 4), "bytes carried": r["state_bytes"][-1], "seconds": round(r["seconds"], 1),
        })  # fmt: skip
    return rows
