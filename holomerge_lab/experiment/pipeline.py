"""The continual loop: tasks arrive one by one; fine-tune, merge, align, evaluate on every task seen so far.

`run(config)` is the whole experiment of one method on one stream and returns a `RunResult` with the accuracy
matrix and the metrics. What happens to one task is one step of steps.py (`holistic_step`: the paper's Algorithm
1; the baselines' steps beside it); the loop around the steps evaluates, counts the bytes carried and checkpoints.
Everything a method needs between tasks is the merge rule's carried state (method/merging.py); `prepare(config)`
does the work every method shares once (data, trunk features, θ0, heads), so `compare` pays for it once. What a
run may be set to is config.py; one task's fine-tuning and alignment is training.py; the frozen heads and the
accuracy after each task are evaluation.py.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..data import TaskStream, build_stream
from ..errors import UserError, check_choice
from ..method.linearize import forward_fn
from ..method.merging import Carried
from ..models.backbone import Backbone, autocast_dtype, resolve_device
from ..models.features import trunk_features
from ..models.heads import prototype_head, templates_for, zero_shot_text_head
from ..models.zoo import build_backbone
from . import metrics
from .checkpoints import latest_checkpoint, save_checkpoint
from .config import METHODS, RunConfig
from .evaluation import Prepared, evaluate
from .steps import STEPS, Observer, TaskRun


@dataclass
class RunResult:
    method: str
    label: str
    stream: str
    backbone: str
    stages: dict[str, bool]
    seed: int
    acc_matrix: np.ndarray  # R[i][j]: accuracy on task j after task i; NaN for j > i
    joint_accuracy: list[float]  # accuracy pooled over the union of seen tasks' test sets, after each task
    state_bytes: list[int]  # bytes carried to the next task, after each task
    seconds: float
    losses: list[list[float]] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    reused_tasks: int = 0  # fine-tuned task models this run loaded from the task cache instead of training
    split: str = ""  # where the stream's train/test split came from (TaskStream.split)

    @property
    def acc(self) -> float:
        """The final accuracy, mean over tasks (= `acc_task_mean`; the name kept for existing readers)."""
        return self.acc_task_mean

    @property
    def acc_task_mean(self) -> float:
        return metrics.final_accuracy(self.acc_matrix)

    @property
    def acc_pooled(self) -> float:
        """The final accuracy pooled over every seen test image (the authors' and Avalanche's)."""
        return self.joint_accuracy[-1]

    @property
    def bwt(self) -> float:
        return metrics.backward_transfer(self.acc_matrix)

    @property
    def forgetting(self) -> float:
        return metrics.forgetting(self.acc_matrix)

    @property
    def forgetting_since_learned(self) -> float:
        return metrics.forgetting_since_learned(self.acc_matrix)

    def to_json(self) -> dict:
        """The run's JSON (docs/architecture.md lists its fields): accuracy matrix rows as lists, None above the
        diagonal. Both conventions of the final accuracy and of forgetting are given (metrics.py defines each);
        `acc` is `acc_task_mean`."""
        matrix = [[None if math.isnan(v) else round(float(v), 6) for v in row] for row in self.acc_matrix]
        return {
            "method": self.method, "label": self.label, "stream": self.stream, "backbone": self.backbone,
            "stages": self.stages, "seed": self.seed, "acc_matrix": matrix, "acc": self.acc,
            "acc_task_mean": self.acc_task_mean, "acc_pooled": self.acc_pooled, "bwt": self.bwt,
            "forgetting": self.forgetting, "forgetting_since_learned": self.forgetting_since_learned,
            "joint_accuracy": self.joint_accuracy, "state_bytes": self.state_bytes, "seconds": self.seconds,
            "config": self.config, "split": self.split, "reused_tasks": self.reused_tasks,
        }  # fmt: skip

    @classmethod
    def from_json(cls, d: dict) -> RunResult:
        """A run back from its JSON (to redraw tables and reports from saved runs)."""
        matrix = np.array([[np.nan if v is None else v for v in row] for row in d["acc_matrix"]], dtype=float)
        return cls(
            method=d["method"], label=d["label"], stream=d["stream"], backbone=d["backbone"], stages=d["stages"],
            seed=d["seed"], acc_matrix=matrix, joint_accuracy=d["joint_accuracy"], state_bytes=d["state_bytes"],
            seconds=d["seconds"], config=d.get("config", {}), reused_tasks=d.get("reused_tasks", 0),
            split=d.get("split", ""),
        )  # fmt: skip


def stream_for(config: RunConfig, image_size: int | None = None) -> TaskStream:
    """The task stream a run of `config` sees (its sizes checked against what the source holds), without any
    model: `prepare` builds it this way, and a test can check a notebook's settings without training.
    `image_size`: decode folder images at this size (a CLIP tower that sees pixels)."""
    config = config.resolve()

    def stream_of(train_per_task: int | None) -> TaskStream:
        return build_stream(
            config.stream, n_tasks=config.tasks, train_per_task=train_per_task,
            test_per_task=config.test_per_task, order=config.order, seed=config.seed, root=config.data_root,
            download=config.download, image_size=image_size,
        )  # fmt: skip

    stream = stream_of(config.train_per_task)
    cap = config.max_train_per_task
    if (
        config.train_per_task is None
        and cap is not None
        and min(len(t.train_labels) for t in stream.tasks) > cap
    ):
        stream = stream_of(cap)
    return stream


def prepare(config: RunConfig, *, progress: bool = True) -> Prepared:
    """Build the stream and backbone, cache trunk features, and build the frozen heads from θ0's embeddings."""
    config = config.resolve()
    backbone = build_backbone(
        config.backbone, image_size=config.image_size, trainable_from=config.trainable_from,
        pretrained=config.pretrained,
    )  # fmt: skip
    # CLIP: folder images are decoded at the tower's input size, as open_clip would
    stream = stream_for(config, backbone.image_size if backbone.pixels_in_top else None)
    device = resolve_device(config.device)
    if backbone.pixels_in_top:  # CLIP: the trunk's blocks (if any) run on the device too
        backbone.model.to(device)
    train = [trunk_features(backbone, t.train_images, progress=progress).to(device) for t in stream.tasks]
    test = [trunk_features(backbone, t.test_images, progress=progress).to(device) for t in stream.tasks]
    backbone.top.to(device)
    if backbone.pixels_in_top:
        backbone.top.autocast = autocast_dtype(config.precision, device)
    named = dict(backbone.top.named_parameters())
    theta0 = {n: named[n].detach().clone() for n in (*backbone.trainable, backbone.bias)}
    if hasattr(backbone.model, "encode_text"):  # open_clip CLIP: zero-shot text heads, as the authors
        if config.center:
            raise UserError("center applies to prototype heads, not to CLIP's text heads: drop center")
        return Prepared(config, stream, backbone, theta0, train, test, text_heads(backbone, stream), None)
    embed = forward_fn(backbone.top, theta0, tangent=False)
    with torch.inference_mode():
        embeddings = [embed(theta0, x).clone() for x in train]
    center = embeddings[0].mean(0) if config.center else None
    if stream.setting == "cil":
        heads = [
            prototype_head(e, t.train_labels, t.classes, center)
            for e, t in zip(embeddings, stream.tasks, strict=True)
        ]
    else:  # one fixed head over all classes, from the first domain: domains must not change the classifier
        first = stream.tasks[0]
        heads = [prototype_head(embeddings[0], first.train_labels, first.classes, center)] * len(stream.tasks)
    return Prepared(config, stream, backbone, theta0, train, test, heads, center)


def text_heads(backbone: Backbone, stream: TaskStream) -> list[Tensor]:
    """CLIP zero-shot heads from class names: CIL, task t's classes (evaluation.head_for concatenates the seen
    ones); DIL, one all-class head for every task."""
    import open_clip

    tokenizer = open_clip.get_tokenizer(backbone.settings["open_clip"])
    templates = templates_for(stream.name)

    def head(classes: Sequence[int]) -> Tensor:
        names = [stream.class_names[c] for c in classes]
        return zero_shot_text_head(backbone.model, tokenizer, names, templates)

    if stream.setting == "cil":
        return [head(t.classes) for t in stream.tasks]
    return [head(stream.tasks[0].classes)] * len(stream.tasks)


def run(
    config: RunConfig,
    prepared: Prepared | None = None,
    *,
    progress: bool = True,
    observe: Observer | None = None,
    checkpoints: Path | None = None,
    resume: bool = False,
    task_cache: Path | None = None,
) -> RunResult:
    """One method on one stream: the accuracy matrix after every task, with what was carried between tasks.

    `observe`, if given, sees every merge as it happens (see `steps.Merge`): the analyses of probes.py read the
    models around a merge from it instead of repeating this loop.

    `checkpoints`, a folder: the carried state is saved there after every task (checkpoints.py); with `resume`,
    the run continues after the newest good checkpoint of the same settings, with the same result as a run that
    was never interrupted (every random draw is seeded per task).

    `task_cache`, a folder: fine-tuned task models are stored there and reused whenever a task's fine-tuning would
    see exactly the same inputs again (task_cache.py says which toggles can reuse what)."""
    config = config.resolve()
    prep = prepared if prepared is not None else prepare(config, progress=progress)
    check_prepared_for(config, prep)
    began = time.perf_counter()
    n = len(prep.stream.tasks)
    forward = forward_fn(prep.backbone.top, prep.theta0, tangent=config.pre)
    matrix = np.full((n, n), np.nan)
    joint, carried_bytes, losses = [], [], []
    carried: Carried | None = None
    fine_tunes = {"zero-shot": 0, "joint": n}.get(config.method, n)
    steps = config.steps or config.epochs * math.ceil(len(prep.train_features[0]) / config.batch_size)
    bar = tqdm(total=fine_tunes * steps, desc=config.label, disable=not progress, leave=False)
    settings_json = recorded_settings(config)
    first, elapsed = 0, 0.0
    if checkpoints is not None and resume:
        state, skipped = latest_checkpoint(checkpoints, settings_json, prep.theta0, n)
        for message in skipped:
            warnings.warn(message, stacklevel=2)
        if state is not None:
            first, elapsed = state["task"] + 1, state["seconds"]
            carried = state["carried"] or None
            matrix = state["acc_matrix"].numpy().copy()
            joint, carried_bytes, losses = state["joint_accuracy"], state["state_bytes"], state["losses"]
            bar.update(min(first, fine_tunes) * steps)
    task_run = TaskRun(prep, config, forward, bar, steps, task_cache, observe)
    step = STEPS[config.method]
    for t in range(first, n):
        done = step(task_run, carried, t)  # steps.holistic_step is the paper's Algorithm 1
        carried, served = done.carried, done.served
        if done.losses is not None:
            losses.append(done.losses)
        if config.method == "individual":  # each task's own model, on its own task, under the all-class head
            accuracy, _ = evaluate(prep, forward, served, n - 1)
            matrix[t:, t] = accuracy[t]
            sizes = [len(seen.test_labels) for seen in prep.stream.tasks[: t + 1]]
            joint.append(metrics.pooled_accuracy(matrix[t, : t + 1], sizes))
        else:
            matrix[t, : t + 1], joint_accuracy = evaluate(prep, forward, served, t)
            joint.append(joint_accuracy)
        carried_bytes.append(metrics.state_bytes(*(carried or {"merged": served}).values()))
        if checkpoints is not None:
            save_checkpoint(checkpoints, t, {
                "config": settings_json, "backbone": config.backbone, "carried": carried or {},
                "acc_matrix": torch.from_numpy(matrix), "joint_accuracy": joint, "state_bytes": carried_bytes,
                "losses": losses, "seconds": elapsed + time.perf_counter() - began,
            })  # fmt: skip
    bar.close()
    return RunResult(
        method=config.method, label=config.label, stream=config.stream, backbone=config.backbone,
        stages=config.stages, seed=config.seed, acc_matrix=matrix, joint_accuracy=joint,
        state_bytes=carried_bytes, seconds=elapsed + time.perf_counter() - began, losses=losses,
        config=settings_json, reused_tasks=task_run.reused, split=prep.stream.split,
    )  # fmt: skip


# The settings `prepare` reads: a run on a Prepared made with other values would be labelled with its own
# config and computed on other data
PREPARE_FIELDS = (
    "stream", "tasks", "train_per_task", "max_train_per_task", "test_per_task", "order", "seed", "data_root",
    "backbone", "image_size", "trainable_from", "pretrained", "center",
)  # fmt: skip


def check_prepared_for(config: RunConfig, prep: Prepared) -> None:
    """`prep` was prepared with the same data, backbone and seed as `config` asks for (both resolved)."""
    made = prep.config.resolve()
    differ = [f"{f}: prepared with {getattr(made, f)!r}, the run asks for {getattr(config, f)!r}"
              for f in PREPARE_FIELDS if _jsonable({f: getattr(made, f)}) != _jsonable({f: getattr(config, f)})]  # fmt: skip
    if differ:
        raise UserError("this Prepared was made for other settings (" + "; ".join(differ) + "): call "
                        "prepare(config) for this run, or replace only other fields of its config")  # fmt: skip


def _jsonable(d: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def recorded_settings(config: RunConfig) -> dict:
    """What `run` records as its result's `config`: the resolved settings as JSON values. Configs that resolve alike
    run alike, so this is what a recorded run is matched on (tour/shipped.py answers a panel's press from it)."""
    return _jsonable(dataclasses.asdict(config.resolve()))


ABLATIONS = ({"pre": False}, {"during": False}, {"post": False})
DEFAULT_METHODS = ("zero-shot", "sequential", "average", "task-arithmetic", "holistic", "individual", "joint")


def compare_configs(config: RunConfig, methods: Sequence[str] = DEFAULT_METHODS) -> list[RunConfig]:
    """One config per row: each method, and after `holistic` its ablations (one stage off at a time)."""
    configs = []
    for method in methods:
        check_choice("method", method, METHODS)
        if list(methods).count(method) > 1:  # two rows of one name: one would overwrite the other's file
            raise UserError(f"method {method!r} is listed {list(methods).count(method)} times: list each once")
        configs.append(dataclasses.replace(config, method=method))
        if method == "holistic":
            configs += [dataclasses.replace(config, method=method, **off) for off in ABLATIONS]
    return configs


def compare(
    config: RunConfig,
    methods: Sequence[str] = DEFAULT_METHODS,
    *,
    seeds: Sequence[int] | None = None,
    progress: bool = True,
    task_cache: Path | None = None,
) -> list[RunResult]:
    """Run every method (and holistic's ablations) on one stream, for each seed (default: the config's one).

    Each seed prepares its own stream (a seed draws the data subsets too); rows of one seed share it. With
    `task_cache`, rows whose fine-tuning sees identical inputs (average, task arithmetic, individual, TIES, OPCM
    all fine-tune from θ0) train each task once. Results: seed-major, in `compare_configs` order."""
    configs = compare_configs(config, methods)
    results = []
    for seed in [config.resolve().seed] if seeds is None else seeds:
        prep = prepare(dataclasses.replace(config, seed=seed), progress=progress)
        for c in configs:
            c = dataclasses.replace(c, seed=seed)
            results.append(run(c, prep, progress=progress, task_cache=task_cache))
    return results
