"""The continual loop: tasks arrive one by one; fine-tune, merge, align, evaluate on every task seen so far.

`run(config)` is the whole experiment of one method on one stream and returns a `RunResult` with the accuracy
matrix and the metrics. Everything a method needs between tasks is the merge rule's carried state (merging.py);
`prepare(config)` does the work every method shares once (data, trunk features, θ0, heads), so `compare` pays
for it once.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
import typing
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from . import metrics
from .align import LOSSES as ALIGNMENT_LOSSES
from .align import align
from .backbones import (
    PRECISIONS,
    Backbone,
    autocast_dtype,
    build_backbone,
    check_checkpoint_file,
    resolve_device,
    tower_sees_pixels,
    trunk_features,
)
from .checkpoints import latest_checkpoint, save_checkpoint
from .data import STREAMS, TaskStream, build_stream
from .errors import UserError, check_choice
from .finetune import ewc_penalty, fine_tune
from .fisher import KINDS, diagonal_fisher
from .heads import head_logits, prototype_head, templates_for, zero_shot_text_head
from .linearize import forward_fn
from .merging import MERGE_RULES, NEEDS_FISHER, Carried, MergeSettings, Params, TaskModel
from .task_cache import cached_task, task_key

# Evaluation batch: the presets' fine-tuning batch, so that evaluating the joint test set of a long stream never
# needs more working memory than a training step does (a tangent forward over 1024 examples holds ~360 MiB more
# than over 50; at 256 the peak of a 100-task run still grew with T, because 5 short tasks never fill a batch).
EVAL_BATCH = 64

# Method name -> (merge rule, where fine-tuning of task t starts: the merged model θ̄(t−1), θ0, or the previous
# task's fine-tuned model θ(t−1)). "holistic" picks its rule from the stages.
METHODS: dict[str, tuple[str | None, str]] = {
    "holistic": ("v-weighted", "merged"),
    "sequential": ("sequential", "merged"),
    "average": ("average", "pretrained"),
    "task-arithmetic": ("task-arithmetic", "pretrained"),
    "zero-shot": (None, "pretrained"),
    "individual": (None, "pretrained"),
    "joint": (None, "pretrained"),
    "ties": ("ties", "pretrained"),
    "ties-store-all": ("ties-store-all", "pretrained"),
    "magmax": ("magmax", "previous"),
    "fisher": ("fisher", "pretrained"),
    "opcm": ("opcm", "pretrained"),
    "ewc": ("ewc", "merged"),
}

PRESETS: dict[str, dict] = {
    # CPU, a few minutes for a whole comparison on the embedded benchmark
    "quick": dict(steps=100, lr=1e-4, batch_size=64, max_train_per_task=1000, align_steps=20),
    # CPU, the embedded benchmark's real numbers: all data, more steps
    "full": dict(steps=300, lr=1e-4, batch_size=64, align_steps=50),
    # the authors' code settings (method.md; PAPER_PROTOCOL says where each comes from): meant for CLIP on a GPU
    "paper": dict(
        steps=None, epochs=10, lr=1e-5, batch_size=128, weight_decay=0.1, warmup_steps=500, cosine=True,
        grad_clip=1.0, alpha=0.4, seed=5, align_parameter="projection", align_teacher="previous",
        align_loss="mse", align_lr=1e-7, align_steps=None, align_weight_decay=0.01, align_grad_clip=1.0,
        logit_scale=100.0, precision="fp32", augment=True,
    ),
}  # fmt: skip

PAPER_PROTOCOL: tuple[tuple[str, str, str], ...] = (
    # (what, the authors' code (VietHoang1512/CMM) and so the `paper` default, the named choice one setting away)
    ("prompts", "their per-data-set sets (src/datasets/templates.py): CIFAR 18, ImageNet-R / DomainNet / CUB 80, "
     "Office-31 6, Office-Home 5, ImageCLEF 5, Cars 8 (heads.TEMPLATES)", "zero_shot_text_head with your own"),
    ("test images", "open_clip's preprocess_val: short side to 224 (bicubic), centre crop", "none: never a squash"),
    ("training images", "open_clip's train transform: RandomResizedCrop, scale 0.9–1, bicubic, new crops every step "
     "(augment=True; boxes drawn on each file's geometry, cut from the whole image stored at 224)",
     "augment=False: the whole image, squashed"),
    ("precision", "fp32 throughout (precision='fp32')", "precision='bf16' (or 'auto')"),
    ("fine-tuning", "AdamW lr 1e-5, decay 0.1, batch 128, 500 warm-up steps then cosine, clip 1.0, 10 epochs; "
     "from the previous merged model, expanded at θ0", "epochs=30 (their small sets), start='pretrained'"),
    ("merge", "v-weighted, α 0.4, raw v, no ε", "variant='clean' (bias-corrected v, ε); during=False"),
    ("alignment", "visual.proj, one epoch, MSE, AdamW lr 1e-7 with its default decay 0.01, clip 1.0, teacher the "
     "previous merged model, on the same crops as the teacher", "align_parameter='bias', align_teacher='current'"),
    ("DomainNet", "domains clipart, sketch, real, infograph, quickdraw, painting; official <domain>_train/_test.txt",
     "without the lists: a seeded 80/20 split, named in the run's `split`"),
    ("class splits", "task t holds classes order[⌊n·t/T⌋ : ⌊n·(t+1)/T⌋] (CUB-200, Cars: 196 classes)",
     "CIFAR-100 / ImageNet-R: T must divide the classes (the same splits)"),
    ("metric", "accuracy pooled over the whole test set of the seen tasks", "acc: the mean over tasks"),
    ("seed", "5", "seeds are an axis: compare over several"),
)  # fmt: skip
"""What `--preset paper` runs, point by point, and the cleaner or cheaper choice one setting away. Not copied on
purpose (method.md's quirks): the ImageNet-R domain filter (theirs loads every domain for every task) and the DIL
script's ablation (theirs: plain interpolation, alignment lr 0; here `during=False, align_lr=0`)."""


@dataclass
class RunConfig:
    """Everything that decides a run. Presets fill the fields a user did not set (see `resolve`)."""

    stream: str = "split-animal"
    method: str = "holistic"
    pre: bool = True  # stage 1: tangent (True) or standard fine-tuning
    during: bool = True  # stage 2: v-weighted (True) or plain interpolation
    post: bool = True  # stage 3: representation alignment after each merge
    preset: str = "quick"
    tasks: int | None = None
    train_per_task: int | None = None  # None: all a task has (DIL: an equal share of the source)
    max_train_per_task: int | None = None  # with train_per_task None: at most this many (presets set it)
    test_per_task: int | None = None
    order: Sequence[int] | None = None
    seed: int | None = None
    backbone: str = "effnet-lite0"
    image_size: int | None = None
    trainable_from: int | None = None
    pretrained: str | None = None  # CLIP: open_clip tag, checkpoint path or "random" (None: "openai")
    data_root: str | None = None  # folder of the file streams (cifar100, imagenet-r, domainnet, office-*)
    download: bool = False  # let torchvision fetch CIFAR-100 into data_root
    device: str = "auto"  # "auto": CUDA when available, else CPU
    precision: str | None = None  # "auto" (bf16 on a CUDA GPU that has it), "fp32", "bf16", "fp16"
    augment: bool | None = (
        None  # open_clip's random training crops (CLIP, trainable_from 0); the paper preset's
    )
    alpha: float | None = None  # weight of the new task in a merge (None: the preset's, else MergeSettings')
    scale: float = MergeSettings.scale  # λ of task arithmetic
    variant: str = "faithful"  # "faithful": raw v, no ε (authors); "clean": bias-corrected v and ε
    eps: float = 1e-12  # ε of the clean variant
    start: str | None = None  # "merged" / "pretrained"; None: the method's own
    steps: int | None = None  # fine-tuning steps per task (None with `epochs`: epochs over the task)
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    weight_decay: float | None = None
    beta2: float = 0.999
    grad_clip: float | None = None
    warmup_steps: int | None = None
    cosine: bool | None = None
    logit_scale: float | None = None
    center: bool = False  # center features by the mean θ0 feature of the first task (CIL-legal)
    align_parameter: str | None = None  # "bias" or "projection"
    align_teacher: str | None = None  # "previous" (merged θ̄(t−1), authors) or "current" (fine-tuned θ(t))
    align_loss: str | None = None  # "mse", "l1", "cosine"
    align_steps: int | None = None  # None: one pass over the task's data
    align_lr: float | None = None
    align_weight_decay: float | None = None  # AdamW's decay in alignment (authors: AdamW's default, 0.01)
    align_grad_clip: float | None = None  # gradient-norm clip in alignment (authors: 1.0); None: no clip
    top_k: float = MergeSettings.top_k  # TIES: fraction of each task vector kept
    ties_scale: float | None = None  # TIES: λ (None: each TIES rule's own, merging.TIES_SCALES)
    magmax_scale: float = MergeSettings.magmax_scale  # MagMax: λ on the max-magnitude task vector
    opcm_alpha: float = MergeSettings.opcm_alpha  # OPCM: singular-value mass of the kept subspace
    fisher_kind: str = "true"  # Fisher of the fisher and ewc methods: "true", "sampled" or "empirical"
    fisher_examples: int = 256  # training examples (a seeded subsample) the Fisher is averaged over
    ewc_strength: float = 100.0  # λ of the EWC penalty

    def resolve(self) -> RunConfig:
        """A copy with the preset's values, then the defaults, filled into every field left as None."""
        _check_types(self)
        check_choice("preset", self.preset, PRESETS)
        check_choice("method", self.method, METHODS)
        check_choice("stream", self.stream, STREAMS)
        check_choice("variant", self.variant, ("faithful", "clean"))
        defaults = dict(
            seed=0, alpha=MergeSettings.alpha, weight_decay=0.0, warmup_steps=0, cosine=False, logit_scale=32.0, precision="fp32",
            align_parameter="bias", align_teacher="previous", align_loss="mse", align_lr=1e-3, augment=False,
            align_weight_decay=0.0,
        )  # fmt: skip
        filled = {k: v for k, v in {**defaults, **PRESETS[self.preset]}.items() if getattr(self, k) is None}
        pixels = tower_sees_pixels(self.backbone, self.trainable_from)
        if self.augment and not pixels:
            raise UserError(
                f"augment crops training images, but {self.backbone} (trainable_from={self.trainable_from}) trains "
                "on cached trunk features; use a CLIP backbone with trainable_from 0, or switch augment off"
            )
        if "augment" in filled and not pixels:  # a preset's crops apply where the top sees pixels
            filled["augment"] = False
        config = dataclasses.replace(self, **filled)
        if config.start is None:
            config.start = METHODS[config.method][1]
        if config.method != "holistic":  # the stages are the holistic method's; baselines run as published
            config.pre = config.during = config.post = False
        check_choice("start point", config.start, ("merged", "pretrained", "previous"))
        check_choice("Fisher kind", config.fisher_kind, KINDS)
        check_choice("alignment parameter", config.align_parameter, ("bias", "projection"))
        check_choice("alignment teacher", config.align_teacher, ("previous", "current"))
        check_choice("alignment loss", config.align_loss, ALIGNMENT_LOSSES)
        check_choice("precision", config.precision, PRECISIONS)
        if not 0.0 < config.alpha <= 1.0:
            raise UserError(f"alpha must be in (0, 1], got {config.alpha}")
        for name in (
            "lr",
            "batch_size",
            "steps",
            "epochs",
            "tasks",
            "train_per_task",
            "test_per_task",
            "max_train_per_task",
        ):
            if getattr(config, name) is not None and getattr(config, name) <= 0:
                raise UserError(f"{name} must be positive, got {getattr(config, name)}")
        for name in (
            "weight_decay", "align_lr", "align_steps", "warmup_steps", "eps", "scale", "align_weight_decay",
            "align_grad_clip",
        ):  # fmt: skip
            if getattr(config, name) is not None and getattr(config, name) < 0:
                raise UserError(f"{name} must not be negative, got {getattr(config, name)}")
        if config.steps is None and config.epochs is None:
            raise UserError("set steps (per task) or epochs")
        if config.pretrained is not None and os.path.isfile(os.path.expanduser(config.pretrained)):
            check_checkpoint_file(os.path.expanduser(config.pretrained))  # now, not after the data is loaded
        return config

    @property
    def stages(self) -> dict[str, bool]:
        return {"pre": self.pre, "during": self.during, "post": self.post}

    @property
    def label(self) -> str:
        """The row name in a comparison table: the method, and for holistic the stages switched off."""
        if self.method != "holistic" or all(self.stages.values()):
            return self.method
        return "holistic −" + "−".join(name for name, on in self.stages.items() if not on)


def _check_types(config: RunConfig) -> None:
    """Each field holds a value of its annotated type (an int is a fine float; a bool is not a number)."""
    hints = typing.get_type_hints(RunConfig)
    for f in dataclasses.fields(config):
        value, allowed = getattr(config, f.name), typing.get_args(hints[f.name]) or (hints[f.name],)
        kinds = tuple(typing.get_origin(a) or a for a in allowed)
        if float in kinds:
            kinds += (int,)
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            names = " or ".join(
                "None" if k is type(None) else k.__name__ for k in kinds if k is not int or float not in kinds
            )
            raise UserError(f"{f.name} must be {names}, got {value!r} ({type(value).__name__})")


@dataclass
class Prepared:
    """What every method of a comparison shares: the stream, the backbone, θ0, trunk features and heads."""

    config: RunConfig
    stream: TaskStream
    backbone: Backbone
    theta0: Params  # the trainable parameters and the alignment bias, at their pre-trained values
    train_features: list[Tensor]
    test_features: list[Tensor]
    heads: list[Tensor]  # CIL: task t's rows (its classes); DIL: the same all-class head for every task
    center: Tensor | None

    @property
    def setting(self) -> str:
        return self.stream.setting


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
        """The JSON of DESIGN.md: accuracy matrix rows as lists, None above the diagonal. Both conventions of the
        final accuracy and of forgetting are given (metrics.py defines each); `acc` is `acc_task_mean`."""
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
    """CLIP zero-shot heads from class names: CIL, task t's classes (the pipeline concatenates the seen ones for
    evaluation); DIL, one all-class head for every task."""
    import open_clip

    tokenizer = open_clip.get_tokenizer(backbone.settings["open_clip"])
    templates = templates_for(stream.name)

    def head(classes: Sequence[int]) -> Tensor:
        names = [stream.class_names[c] for c in classes]
        return zero_shot_text_head(backbone.model, tokenizer, names, templates)

    if stream.setting == "cil":
        return [head(t.classes) for t in stream.tasks]
    return [head(stream.tasks[0].classes)] * len(stream.tasks)


def head_for(prep: Prepared, tasks: Sequence[int]) -> tuple[Tensor, list[int]]:
    """The head over the classes of `tasks` (CIL: their rows, in order; DIL: the one all-class head), and the
    class id of each of its rows."""
    if prep.setting == "dil":
        return prep.heads[0], list(prep.stream.tasks[0].classes)
    return torch.cat([prep.heads[i] for i in tasks]), [c for i in tasks for c in prep.stream.tasks[i].classes]


def head_rows(prep: Prepared, classes: Sequence[int]) -> Tensor:
    """A lookup from global class id to the row of that class in a head over `classes` (-1: not in the head)."""
    index = torch.full((len(prep.stream.class_names),), -1, dtype=torch.long)
    index[torch.tensor(list(classes))] = torch.arange(len(classes))
    return index


def _seen_head(prep: Prepared, t: int) -> tuple[Tensor, list[int]]:
    """The head used to evaluate after task t (0-based), and the class id of each of its rows."""
    return head_for(prep, range(t + 1))


def test_logits(
    prep: Prepared,
    forward: Callable[..., Tensor],
    params: Params,
    tasks: Sequence[int],
    *,
    batch_size: int = EVAL_BATCH,
) -> tuple[Tensor, Tensor]:
    """Logits on the joint test set of `tasks` under the head of their classes, and the labels as head rows.
    `tasks=[t]` is task t under its own head; `tasks=range(t + 1)` is the task-agnostic evaluation after task t."""
    head, classes = head_for(prep, tasks)
    index = head_rows(prep, classes)
    features = torch.cat([prep.test_features[i] for i in tasks])
    labels = index[torch.cat([prep.stream.tasks[i].test_labels for i in tasks])].to(features.device)
    with torch.no_grad():
        logits = torch.cat([
            head_logits(forward(params, features[i : i + batch_size]), head, prep.config.logit_scale, prep.center)
            for i in range(0, len(features), batch_size)
        ])  # fmt: skip
    return logits, labels


def evaluate(
    prep: Prepared, forward: Callable[..., Tensor], params: Params, upto: int, *, batch_size: int = EVAL_BATCH
) -> tuple[list[float], float]:
    """Accuracy on each task 0..upto under the head of every class seen so far (task-agnostic), and on their
    union, in one pass over the joint test set."""
    logits, labels = test_logits(prep, forward, params, range(upto + 1), batch_size=batch_size)
    correct = (logits.argmax(1) == labels).float()
    sizes = [len(t.test_labels) for t in prep.stream.tasks[: upto + 1]]
    return [float(c.mean()) for c in correct.split(sizes)], float(correct.mean())


def _train_task(
    prep: Prepared,
    config: RunConfig,
    forward,
    start: Params,
    t: int | None,
    bar,
    seed: int,
    *,
    penalty: Callable[[Params], Tensor] | None = None,
    fisher: bool = False,
) -> tuple[TaskModel, list[float]]:
    """Fine-tune on task t (or, t=None, on all tasks at once for `joint`) against its frozen head, adding
    `penalty(params)` to the loss if given; with `fisher`, also take the diagonal Fisher of the result on a seeded
    subsample of `config.fisher_examples` training examples."""
    tasks = range(len(prep.stream.tasks)) if t is None else [t]
    features = torch.cat([prep.train_features[i] for i in tasks])
    labels = torch.cat([prep.stream.tasks[i].train_labels for i in tasks])
    head, classes = (
        _seen_head(prep, max(tasks)) if t is None else (prep.heads[t], prep.stream.tasks[t].classes)
    )
    index = head_rows(prep, classes)
    steps = config.steps or config.epochs * math.ceil(len(features) / config.batch_size)
    steps *= len(tasks)
    bias = {prep.backbone.bias: start[prep.backbone.bias]}
    trainable = {n: v for n, v in start.items() if n != prep.backbone.bias}
    task_forward = lambda p, x: forward({**p, **bias}, x)  # noqa: E731
    classify = lambda z: head_logits(z, head, config.logit_scale, prep.center)  # noqa: E731
    result = fine_tune(
        task_forward, trainable, features, index[labels].to(features.device), classify,
        steps=steps, lr=config.lr, batch_size=config.batch_size, weight_decay=config.weight_decay,
        betas=(0.9, config.beta2), grad_clip=config.grad_clip, warmup_steps=config.warmup_steps,
        cosine=config.cosine, seed=seed, progress=bar.update, penalty=penalty,
        augment=training_views(prep, config, list(tasks), seed),
    )  # fmt: skip
    information = None
    if fisher:
        subset = torch.randperm(len(features), generator=torch.Generator().manual_seed(seed))
        subset = subset[: config.fisher_examples]
        information = diagonal_fisher(  # the fisher and ewc methods fine-tune standard (pre=False): a module
            prep.backbone.top, features[subset], index[labels][subset], config.fisher_kind, params=result.params,
            constants=bias, head=classify, chunk_size=16, seed=seed,
        )  # fmt: skip
    return TaskModel(
        {**result.params, **bias}, result.second_moment, result.steps, result.beta2, information
    ), result.losses


def training_views(
    prep: Prepared, config: RunConfig, tasks: Sequence[int], seed: int
) -> Callable[[Tensor, Tensor, int], Tensor] | None:
    """With `config.augment`: (batch, indices, step) -> open_clip's random training crops of that batch of the
    concatenated training images of `tasks` (boxes drawn on each file's geometry, seeded by `seed` and the step,
    so every epoch sees new crops and a rerun the same ones). None without augmentation."""
    if not config.augment:
        return None
    parts = [prep.stream.tasks[i].train_sizes for i in tasks]
    sizes = None if any(p is None for p in parts) else torch.cat(parts)

    def view(x: Tensor, indices: Tensor, step: int) -> Tensor:
        step_seed = int(np.random.SeedSequence([seed, step]).generate_state(1)[0])
        return prep.backbone.training_view(x, None if sizes is None else sizes[indices.cpu()], step_seed)

    return view


@torch.no_grad()
def features(
    forward: Callable[..., Tensor], params: Params, inputs: Tensor, *, batch_size: int = EVAL_BATCH
) -> Tensor:
    """The model's output features on trunk features `inputs`, in batches, without gradients."""
    return torch.cat([forward(params, inputs[i : i + batch_size]) for i in range(0, len(inputs), batch_size)])


def fine_tune_task(
    prep: Prepared, t: int, *, tangent: bool, config: RunConfig | None = None, start: Params | None = None
) -> tuple[TaskModel, list[float]]:
    """Task t's model alone, fine-tuned from `start` (θ0 by default), standard or tangent, with `config`'s
    settings (the prepared run's by default): the unit that the analyses take apart (loss barriers, linearity,
    Fisher against Adam's v)."""
    config = (config or prep.config).resolve()
    forward = forward_fn(prep.backbone.top, prep.theta0, tangent=tangent)
    with tqdm(disable=True) as bar:
        return _train_task(
            prep, config, forward, prep.theta0 if start is None else start, t, bar, config.seed + 1000 * t
        )


def task_objective(
    prep: Prepared, t: int, *, tangent: bool
) -> tuple[Callable[[Params, Tensor], Tensor], Tensor, Tensor]:
    """Task t as its fine-tuning sees it: `logits(params, features)` through the top (standard or tangent around
    θ0) and task t's frozen head, its training features, and its labels as head rows. `params` may leave out the
    alignment bias (θ0's is used), so the Fisher of exactly the fine-tuned parameters can be taken through it."""
    forward = forward_fn(prep.backbone.top, prep.theta0, tangent=tangent)
    bias = {prep.backbone.bias: prep.theta0[prep.backbone.bias]}
    head, classes = head_for(prep, [t])
    index = head_rows(prep, classes)

    def logits(params: Params, x: Tensor) -> Tensor:
        return head_logits(forward({**bias, **params}, x), head, prep.config.logit_scale, prep.center)

    return logits, prep.train_features[t], index[prep.stream.tasks[t].train_labels]


def _align(prep: Prepared, config: RunConfig, forward, merged: Params, teacher: Params, t: int) -> Params:
    """Stage 3 on task t's training images (no labels): pull the merged model's features to the teacher's."""
    inputs = prep.train_features[t]
    seed = config.seed + 7919 * t
    views = training_views(prep, config, [t], seed)
    # with augmentation the teacher sees each batch's crops, as in the authors' loop; else its features once
    target = (lambda x: forward(teacher, x)) if views is not None else features(forward, teacher, inputs)
    parameter = prep.backbone.bias if config.align_parameter == "bias" else prep.backbone.projection
    steps = config.align_steps or math.ceil(len(inputs) / config.batch_size)
    return align(
        forward, merged, target, inputs, parameter=parameter, loss=config.align_loss, steps=steps,
        lr=config.align_lr, batch_size=config.batch_size, seed=seed, weight_decay=config.align_weight_decay,
        grad_clip=config.align_grad_clip, augment=views,
    )  # fmt: skip


# The settings `_train_task` reads, besides the data and the start point
TRAINING_FIELDS = (
    "backbone", "image_size", "trainable_from", "pretrained", "device", "precision", "steps", "epochs", "lr",
    "batch_size", "weight_decay", "beta2", "grad_clip", "warmup_steps", "cosine", "logit_scale", "augment",
)  # fmt: skip


def _task_inputs(prep: Prepared, config: RunConfig, start: Params, t: int, fisher: bool) -> dict:
    """Everything that decides fine-tuning task t from `start` (the task cache's key)."""
    task = prep.stream.tasks[t]
    return {
        "features": prep.train_features[t], "labels": task.train_labels, "classes": list(task.classes),
        "head": prep.heads[t], "center": prep.center, "theta0": prep.theta0, "start": start, "tangent": config.pre,
        "seed": config.seed + 1000 * t, "settings": {f: getattr(config, f) for f in TRAINING_FIELDS},
        "fisher": [config.fisher_kind, config.fisher_examples] if fisher else None,
    }  # fmt: skip


@dataclass(frozen=True)
class Merge:
    """One merge inside `run`, for observers: what was carried in, the new task's model, and the result."""

    task: int  # 0-based index of the task just merged
    forward: Callable[..., Tensor]  # the run's model function (tangent or standard)
    carried: Carried | None  # the merge rule's state before this task (None before the first)
    task_model: TaskModel  # θ(t) and its Adam v
    settings: MergeSettings  # the merge's settings (α, ε, bias correction)
    merged: Params  # the merge's output, before alignment
    aligned: Params  # the model served after the task (= merged when alignment is off)
    teacher: Params  # what alignment pulls the features towards (θ̄(t−1) or θ(t), per align_teacher)


Observer = Callable[[Merge], None]


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

    `observe`, if given, sees every merge as it happens (see `Merge`): the analyses of probes.py read the models
    around a merge from it instead of repeating this loop.

    `checkpoints`, a folder: the carried state is saved there after every task (checkpoints.py); with `resume`,
    the run continues after the newest good checkpoint of the same settings, with the same result as a run that
    was never interrupted (every random draw is seeded per task).

    `task_cache`, a folder: fine-tuned task models are stored there and reused whenever a task's fine-tuning would
    see exactly the same inputs again (task_cache.py says which toggles can reuse what)."""
    config = config.resolve()
    prep = prepared if prepared is not None else prepare(config, progress=progress)
    began = time.perf_counter()
    n = len(prep.stream.tasks)
    forward = forward_fn(prep.backbone.top, prep.theta0, tangent=config.pre)
    rule_name = METHODS[config.method][0]
    if config.method == "holistic" and not config.during:
        rule_name = "interpolate"
    matrix = np.full((n, n), np.nan)
    joint, carried_bytes, losses = [], [], []
    carried: Carried | None = None
    fine_tunes = {"zero-shot": 0, "joint": n}.get(config.method, n)
    steps = config.steps or config.epochs * math.ceil(len(prep.train_features[0]) / config.batch_size)
    bar = tqdm(total=fine_tunes * steps, desc=config.label, disable=not progress, leave=False)
    settings_json = _jsonable(dataclasses.asdict(config))
    first, elapsed, reused = 0, 0.0, 0
    if checkpoints is not None and resume:
        state, skipped = latest_checkpoint(checkpoints, settings_json)
        for message in skipped:
            warnings.warn(message, stacklevel=2)
        if state is not None:
            first, elapsed = state["task"] + 1, state["seconds"]
            carried = state["carried"] or None
            matrix = state["acc_matrix"].numpy().copy()
            joint, carried_bytes, losses = state["joint_accuracy"], state["state_bytes"], state["losses"]
            bar.update(min(first, fine_tunes) * steps)
    if config.method == "joint":
        model, task_losses = _train_task(prep, config, forward, prep.theta0, None, bar, config.seed)
        losses[:] = [task_losses]
    for t in range(first, n):
        if config.method == "zero-shot":
            served = prep.theta0
        elif config.method == "joint":
            served = model.params
        else:
            previous = prep.theta0 if carried is None else carried["merged"]
            start = {"merged": previous, "pretrained": prep.theta0}.get(config.start)
            if start is None:  # "previous": the last fine-tuned model (MagMax's sequential fine-tuning)
                start = prep.theta0 if carried is None else carried["finetuned"]
            penalty = None
            if rule_name == "ewc" and carried is not None:
                penalty = ewc_penalty(carried["merged"], carried["weight"], config.ewc_strength)
            train = functools.partial(
                _train_task, prep, config, forward, start, t, bar, config.seed + 1000 * t,
                penalty=penalty, fisher=rule_name in NEEDS_FISHER,
            )  # fmt: skip
            if task_cache is None or penalty is not None:  # EWC's penalty depends on the whole history
                task, task_losses = train()
            else:
                inputs = _task_inputs(prep, config, start, t, rule_name in NEEDS_FISHER)
                device = next(iter(start.values())).device
                task, task_losses, hit = cached_task(task_cache, task_key(inputs), train, device)
                bar.update(steps if hit else 0)
                reused += hit
            losses.append(task_losses)
            if config.method == "individual":
                served = task.params
            else:
                settings = MergeSettings(
                    theta0=prep.theta0, task_index=t + 1, alpha=config.alpha, scale=config.scale,
                    eps=config.eps if config.variant == "clean" else 0.0, bias_correct=config.variant == "clean",
                    top_k=config.top_k, ties_scale=config.ties_scale, magmax_scale=config.magmax_scale,
                    opcm_alpha=config.opcm_alpha,
                )  # fmt: skip
                before = carried
                carried = MERGE_RULES[rule_name](carried, task, settings)
                merged = carried["merged"]
                teacher = previous if config.align_teacher == "previous" else task.params
                if config.method == "holistic" and config.post and t > 0:
                    carried["merged"] = _align(prep, config, forward, merged, teacher, t)
                if observe is not None:
                    observe(Merge(t, forward, before, task, settings, merged, carried["merged"], teacher))
                served = carried["merged"]
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
        config=settings_json, reused_tasks=reused, split=prep.stream.split,
    )  # fmt: skip


def _jsonable(d: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


ABLATIONS = ({"pre": False}, {"during": False}, {"post": False})
DEFAULT_METHODS = ("zero-shot", "sequential", "average", "task-arithmetic", "holistic", "individual", "joint")


def compare_configs(config: RunConfig, methods: Sequence[str] = DEFAULT_METHODS) -> list[RunConfig]:
    """One config per row: each method, and after `holistic` its ablations (one stage off at a time)."""
    configs = []
    for method in methods:
        check_choice("method", method, METHODS)
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
