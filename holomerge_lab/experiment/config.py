"""What a user sets: `RunConfig`, the methods it names, the presets that fill it, and its checks.

Every setting of a run, its default and its valid range live here, so that `holomerge-lab run --help`, a notebook's
`RunConfig(...)` and a run's JSON `config` all point to one file. `RunConfig.resolve` fills a preset's values,
picks the method's start point and refuses a bad value before any data is loaded.
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from collections.abc import Sequence
from dataclasses import dataclass

from ..data import DIL_STREAMS, STREAMS
from ..errors import SettingError, UserError, check_choice
from ..method.align import LOSSES as ALIGNMENT_LOSSES
from ..method.fisher import KINDS
from ..method.merging import MergeSettings
from ..models.backbone import PRECISIONS, resolve_device
from ..models.clip import CLIP_MODELS, check_checkpoint_file
from ..models.zoo import tower_sees_pixels

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
    # the authors' code settings (docs/method.md; PAPER_PROTOCOL says where each comes from): for CLIP on a GPU
    "paper": dict(
        steps=None, epochs=10, lr=1e-5, batch_size=128, weight_decay=0.1, warmup_steps=500, cosine=True,
        grad_clip=1.0, alpha=0.4, seed=5, align_parameter="projection", align_teacher="previous",
        align_loss="mse", align_lr=1e-7, align_steps=None, align_weight_decay=0.01, align_grad_clip=1.0,
        logit_scale=100.0, precision="fp32", augment=True,
    ),
}  # fmt: skip
# `paper` as the authors ran each stream; `paper-method` the same settings with the method whole on every stream
PRESETS["paper-method"] = PRESETS["paper"]
# Where their scripts depart from those settings, by stream (VietHoang1512/CMM: scripts/CIL/all.sh, the full Cars and
# CUB-200 lines; scripts/DIL/all.sh): both paper presets apply these
PAPER_STREAMS: dict[str, dict] = {"cars": dict(epochs=30, align_loss="l1"), "cub200": dict(epochs=30)}
# Their domain-incremental script: the new task weighted 0.6, the v-weighted branch short-circuited (plain
# interpolation), alignment at lr 0 (a no-op); `paper` runs that (during and post off), `paper-method` does not
PAPER_DIL = dict(alpha=0.6)

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
    ("domain-incremental streams", "their DIL script: plain interpolation (the v-weighted branch short-circuited by "
     "`if True:`), new-task weight α 0.6, alignment lr 0 (a no-op): here during=False, post=False, α 0.6",
     "preset='paper-method': v-weighted merge and alignment as on class-incremental streams"),
    ("Cars, CUB-200", "30 epochs (their full lines in scripts/CIL/all.sh); Cars aligns with the L1 loss (their "
     "default --representation_loss)", "epochs=10, align_loss='mse'"),
    ("class names", "CIFAR-100's as torchvision gives them, underscores kept ('aquarium_fish'); every other set's "
     "with spaces", "none"),
    ("backbone", "ViT-B/16, OpenAI weights: a paper preset refuses a non-CLIP backbone", "backbone='clip-vit-b-32' "
     "and the others of `holomerge-lab list`"),
    ("DomainNet", "domains clipart, sketch, real, infograph, quickdraw, painting; official <domain>_train/_test.txt",
     "without the lists: a seeded 80/20 split, named in the run's `split`"),
    ("class splits", "task t holds classes order[⌊n·t/T⌋ : ⌊n·(t+1)/T⌋] (CUB-200, Cars: 196 classes)",
     "CIFAR-100 / ImageNet-R: T must divide the classes (the same splits)"),
    ("metric", "accuracy pooled over the whole test set of the seen tasks", "acc: the mean over tasks"),
    ("seed", "5", "seeds are an axis: compare over several"),
)  # fmt: skip
"""What `--preset paper` runs, item by item, and the cleaner or cheaper choice one setting away. Not copied on purpose
(the quirks in docs/method.md): the ImageNet-R domain filter (theirs loads every domain for every task); the Cars
test filter that drops 00248.jpg (it matches only their cluster's path, and leaves their class-split test targets
one place out of step after it); the active Cars line of their CIL script (lr 1e-4, alignment lr 1e-5 with the L1
loss, α 0.3, stopping after two tasks: `finetune_splitted_linear_debug.py`, a debug run, not their protocol)."""


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
        if self.preset.startswith("paper") and not is_clip(self.backbone):
            raise UserError(
                f"the {self.preset} preset is the authors' CLIP ViT-B/16 setting, not one for {self.backbone}: add "
                "--backbone clip-vit-b-16 (tiny-clip for a CPU check), or use --preset quick or full"
            )
        defaults = dict(
            seed=0, alpha=MergeSettings.alpha, weight_decay=0.0, warmup_steps=0, cosine=False, logit_scale=32.0, precision="fp32",
            align_parameter="bias", align_teacher="previous", align_loss="mse", align_lr=1e-3, augment=False,
            align_weight_decay=0.0,
        )  # fmt: skip
        if self.steps is not None and self.epochs is not None:
            raise UserError(f"set steps ({self.steps}) or epochs ({self.epochs}) per task, not both")
        preset = _preset_values(self.preset, self.stream)
        filled = {k: v for k, v in {**defaults, **preset}.items() if getattr(self, k) is None}
        if self.steps is not None or self.epochs is not None:  # what the user set wins over the preset's other one
            filled.pop("epochs" if self.steps is not None else "steps", None)
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
        elif config.preset == "paper" and config.stream in DIL_STREAMS:  # their DIL script (PAPER_DIL)
            config.during = config.post = False
        check_choice("start point", config.start, ("merged", "pretrained", "previous"))
        check_choice("Fisher kind", config.fisher_kind, KINDS)
        check_choice("alignment parameter", config.align_parameter, ("bias", "projection"))
        check_choice("alignment teacher", config.align_teacher, ("previous", "current"))
        check_choice("alignment loss", config.align_loss, ALIGNMENT_LOSSES)
        check_choice("precision", config.precision, PRECISIONS)
        _check_numbers(config)
        resolve_device(config.device)  # a device this machine has, before any data is loaded
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


def _preset_values(preset: str, stream: str) -> dict:
    """The preset's values on this stream: the paper presets with the authors' per-stream departures."""
    values = dict(PRESETS[preset])
    if preset.startswith("paper"):
        values.update(PAPER_STREAMS.get(stream, {}))
    if preset == "paper" and stream in DIL_STREAMS:
        values.update(PAPER_DIL)
    return values


def is_clip(backbone: str) -> bool:
    return backbone in CLIP_MODELS or backbone == "tiny-clip"


# Every number's valid range: (low, high, low included, high included); None is open. Every float must also be
# finite, so a NaN, which fails no `x < 0`, never gets through.
RANGES: dict[str, tuple[float | None, float | None, bool, bool]] = {
    "alpha": (0.0, 1.0, False, True),
    "lr": (0.0, None, False, False),
    "batch_size": (1, None, True, False),
    "steps": (1, None, True, False),
    "epochs": (1, None, True, False),
    "tasks": (1, None, True, False),
    "train_per_task": (1, None, True, False),
    "test_per_task": (1, None, True, False),
    "max_train_per_task": (1, None, True, False),
    "seed": (0, 2**32 - 1, True, True),
    "image_size": (1, None, True, False),
    "trainable_from": (0, None, True, False),
    "weight_decay": (0.0, None, True, False),
    "beta2": (0.0, 1.0, True, False),
    "grad_clip": (0.0, None, False, False),
    "warmup_steps": (0, None, True, False),
    "logit_scale": (0.0, None, False, False),
    "eps": (0.0, None, True, False),
    "scale": (0.0, None, True, False),
    "align_steps": (1, None, True, False),
    "align_lr": (0.0, None, True, False),
    "align_weight_decay": (0.0, None, True, False),
    "align_grad_clip": (0.0, None, False, False),
    "top_k": (0.0, 1.0, False, True),
    "ties_scale": (0.0, None, True, False),
    "magmax_scale": (0.0, None, True, False),
    "opcm_alpha": (0.0, 1.0, False, True),
    "fisher_examples": (1, None, True, False),
    "ewc_strength": (0.0, None, True, False),
}


def _check_numbers(config: RunConfig) -> None:
    """Every number set is finite and in its range (`RANGES`), before any data is loaded."""
    for name, (low, high, low_in, high_in) in RANGES.items():
        value = getattr(config, name)
        if value is None:
            continue
        if not math.isfinite(value):
            raise SettingError(name, f"must be a finite number, got {value}")
        too_low = low is not None and (value < low if low_in else value <= low)
        too_high = high is not None and (value > high if high_in else value >= high)
        if too_low or too_high:
            raise SettingError(name, f"must {_range_words(low, high, low_in, high_in)}, got {value}")


def _range_words(low, high, low_in: bool, high_in: bool) -> str:
    if high is None and (low, low_in) in ((0, False), (1, True)):
        return "be positive"
    if high is None and (low, low_in) == (0, True):
        return "not be negative"
    return f"be in {'[' if low_in else '('}{low}, {high}{']' if high_in else ')'}"


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
