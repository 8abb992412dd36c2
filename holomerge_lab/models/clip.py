"""CLIP image towers (open_clip ViTs) as backbones, and the tiny random ViT that tests the same code path.

- ``clip-vit-b-32``, ``clip-vit-b-16`` (and ``clip-vit-l-14``): open_clip ViTs, OpenAI weights by default
  (``pretrained``: an open_clip tag, a local checkpoint path, or ``"random"``). Trunk = blocks
  ``0 .. trainable_from-1`` (default 0: the identity on the uint8 pixels, so the whole tower trains, as in the
  authors' code); top = the remaining blocks + pooling + ``visual.proj`` + a zero bias. The top resizes and
  normalises raw pixels itself, on its device, so the cached inputs stay uint8 at the images' own size.
- ``tiny-clip``: a tiny open_clip ViT registered at run time with random weights (seeded), to exercise the same
  CLIP / attention code path in seconds.

Before open_clip is asked for weights, the offline and checkpoint checks here fail in seconds with the fix, where a
download would hang or torch.load would fail deep inside. open_clip itself is imported only when a CLIP is built.
One family per module: `models.zoo` builds these by name.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import UserError
from .backbone import AlwaysEval, Backbone, clip_input, set_trainable

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


# --------------------------------------------------------------------------------------------------------------------
# tiny-clip (a tiny open_clip ViT, random weights, for tests of the attention path)
# --------------------------------------------------------------------------------------------------------------------

TINY_CLIP_NAME = "holomerge-tiny-ViT"
TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def register_tiny_clip() -> str:
    """Register the tiny ViT config with open_clip (idempotent) and return its model name.

    open_clip's public way is `add_model_config(path)` with a JSON file; the file only needs to exist while it is
    scanned, after which the config lives in open_clip's in-memory registry.
    """
    import open_clip

    if TINY_CLIP_NAME not in open_clip.list_models():
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / f"{TINY_CLIP_NAME}.json"
            path.write_text(json.dumps(TINY_CLIP_CONFIG))
            open_clip.add_model_config(path)
    return TINY_CLIP_NAME


# --------------------------------------------------------------------------------------------------------------------
# The image tower cut into trunk and top
# --------------------------------------------------------------------------------------------------------------------


def clip_projection_name(visual: nn.Module, prefix: str = "") -> str:
    """Name of the image tower's output projection, found by role (the tensor the pooled token is multiplied by)."""
    proj = getattr(visual, "proj", None)
    target = None
    if isinstance(proj, nn.Parameter):  # open_clip VisionTransformer: pooled @ proj
        target = proj
    elif isinstance(proj, nn.Linear):
        target = proj.weight
    elif hasattr(visual, "attnpool"):  # open_clip ModifiedResNet: attention pool's output projection
        target = visual.attnpool.c_proj.weight
    elif hasattr(visual, "head") and hasattr(visual.head, "proj"):  # timm towers
        target = visual.head.proj.weight
    if target is None:
        raise UserError(f"cannot find the output projection of image tower {type(visual).__name__}")
    for n, p in visual.named_parameters():
        if p is target:
            return prefix + n
    raise AssertionError("projection parameter not found among the tower's parameters")


class _MathAttention:
    """Context: `nn.MultiheadAttention` off its fused eval-mode fast path (`aten::_native_multi_head_attention`),
    which has no forward-mode AD rule, so `torch.func.jvp` would fail even under `sdpa_kernel(SDPBackend.MATH)`.
    The slow path is the same function; the previous global setting is restored on exit."""

    def __enter__(self):
        self.was = torch.backends.mha.get_fastpath_enabled()
        torch.backends.mha.set_fastpath_enabled(False)

    def __exit__(self, *exc):
        torch.backends.mha.set_fastpath_enabled(self.was)


class ClipTrunk(AlwaysEval):
    """The frozen first `split` blocks of an open_clip ViT: pixels -> tokens [B, L, W].

    `split=0` is the identity on the uint8 pixels (all the tower trains, as in the authors' code)."""

    def __init__(self, visual: nn.Module, split: int, size: int, mean, std):
        super().__init__()
        self.visual, self.split, self.size, self.mean, self.std = visual, split, size, mean, std

    def forward(self, x: Tensor) -> Tensor:
        if self.split == 0:
            return x
        weight = self.visual.conv1.weight
        with _MathAttention():
            x = self.visual._embeds(clip_input(x.to(weight.device), self.size, self.mean, self.std))
            for block in self.visual.transformer.resblocks[: self.split]:
                x = block(x)
        return x


class ClipTop(AlwaysEval):
    """Blocks ``split..`` of the CLIP image tower + pooling + projection + a zero bias -> embedding [B, D].

    With ``split=0`` its input is the uint8 pixels (`clip_input`: open_clip's evaluation resize and centre crop,
    then normalised, here on the model's device), else the
    trunk's tokens. Parameter names are the open_clip model's (``visual.proj``, ``visual.transformer.resblocks.11...``).
    `autocast`: a dtype (bf16 / fp16) to run the tower in under `torch.autocast` on CUDA, or None (float32);
    the embedding is returned in float32 either way.
    """

    def __init__(self, visual: nn.Module, embed_dim: int, split: int = 0, size: int = 224, mean=CLIP_MEAN,
                 std=CLIP_STD):  # fmt: skip
        super().__init__()
        self.visual, self.split, self.size, self.mean, self.std = visual, split, size, mean, std
        self.bias = nn.Parameter(torch.zeros(embed_dim), requires_grad=False)
        self.autocast: torch.dtype | None = None

    def forward(self, x: Tensor) -> Tensor:
        device = self.bias.device
        with _MathAttention(), torch.autocast(device.type, self.autocast or torch.float32,
                                              enabled=self.autocast is not None):  # fmt: skip
            if self.split == 0:
                x = self.visual._embeds(
                    clip_input(x.to(device), self.size, self.mean, self.std, self.bias.dtype)
                )
            else:
                x = x.to(device)
            for block in self.visual.transformer.resblocks[self.split :]:
                x = block(x)
            pooled, _ = self.visual._pool(x)
            if self.visual.proj is not None:
                pooled = pooled @ self.visual.proj
        return pooled.to(self.bias.dtype) + self.bias


# --------------------------------------------------------------------------------------------------------------------
# Weights: offline and checkpoint checks, then the builders
# --------------------------------------------------------------------------------------------------------------------


def _has_network(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    import socket

    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() not in ("", "0", "false", "no")


def check_checkpoint_file(path: str) -> None:
    """Refuse a file that cannot be a checkpoint before torch.load fails on it deep inside open_clip: a checkpoint
    is a zip archive (torch.save), a legacy pickle (first byte 0x80) or a safetensors file (a JSON header)."""
    with open(path, "rb") as f:
        head = f.read(4096)
    if zipfile.is_zipfile(path) or head[:1] == b"\x80" or head[8:9] == b"{":
        return
    try:
        head.decode("utf-8")
        kind = "a text file"
    except UnicodeDecodeError:
        kind = "a binary file of another format"
    raise UserError(
        f"--pretrained {path} is {kind}, not a checkpoint; pass a state dict saved with torch.save (or a "
        ".safetensors file) of the backbone's open_clip model, or an open_clip tag such as openai"
    )


def _check_pretrained(model_name: str, pretrained: str) -> None:
    """Fail in seconds, with the fix, where open_clip would hang on a download or fail deep inside."""
    import open_clip

    if os.path.isfile(os.path.expanduser(pretrained)):
        check_checkpoint_file(os.path.expanduser(pretrained))
        return
    fix = (
        "pass a local checkpoint file instead (`pretrained=PATH`, CLI `--pretrained PATH`), or run once online to "
        "fill the Hugging Face cache" + ("" if _offline() else " and then set HF_HUB_OFFLINE=1")
    )
    tags = open_clip.list_pretrained_tags_by_model(model_name)
    if pretrained not in tags:
        raise UserError(
            f"{pretrained!r} is neither a file nor a pretrained tag of {model_name} (tags: {', '.join(tags) or 'none'}); "
            + fix
        )
    if not _offline() and not _has_network():
        raise UserError(
            f"cannot reach huggingface.co to download the {model_name} {pretrained!r} weights; set HF_HUB_OFFLINE=1 "
            "to use weights already in the Hugging Face cache, or " + fix
        )


def build_clip(
    model_name: str, *, pretrained: str | None = None, image_size: int | None = None, seed: int = 0, name=None,
    trainable_from: int | None = None,
) -> Backbone:  # fmt: skip
    """An open_clip ViT as a Backbone: trunk = blocks ``0..trainable_from-1`` (frozen, cached), top = the rest.

    `trainable_from` (default 0, the authors' setting: the whole image tower trains) is a transformer block index,
    as for EfficientNet. `pretrained`: an open_clip tag (downloads; checked first so that offline it fails fast) or
    a local checkpoint path. Random initialisation (no `pretrained`) is seeded without touching the global RNG.
    """
    import open_clip

    if pretrained is not None:
        _check_pretrained(model_name, pretrained)
        pretrained = (
            os.path.expanduser(pretrained) if os.path.isfile(os.path.expanduser(pretrained)) else pretrained
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = open_clip.create_model(
                model_name, pretrained=pretrained, force_image_size=image_size, device="cpu"
            )
        except (RuntimeError, OSError, ValueError) as e:
            if pretrained is None:
                raise
            where = (
                "they are not in the Hugging Face cache (HF_HUB_OFFLINE is set): run once online to fill it, or"
                if _offline()
                else "offline, set HF_HUB_OFFLINE=1 to read the Hugging Face cache, or"
            )
            raise UserError(
                f"could not load open_clip weights {model_name!r} / {pretrained!r} ({e}); {where} pass a local "
                "checkpoint file as `pretrained` (CLI `--pretrained PATH`)"
            ) from e
    model.eval().requires_grad_(False)
    visual = model.visual
    if not hasattr(visual, "transformer"):
        raise UserError(
            f"{model_name} has no ViT image tower; choose a ViT model (ViT-B-32, ViT-B-16, ViT-L-14)"
        )
    blocks = len(visual.transformer.resblocks)
    split = 0 if trainable_from is None else int(trainable_from)
    if not 0 <= split < blocks:
        raise UserError(f"trainable_from must be a block index in 0..{blocks - 1}, got {split}")
    size = visual.image_size
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    mean = tuple(getattr(visual, "image_mean", None) or CLIP_MEAN)
    std = tuple(getattr(visual, "image_std", None) or CLIP_STD)
    with torch.no_grad():
        embed_dim = visual(torch.zeros(1, 3, size, size)).shape[-1]
    top = ClipTop(visual, embed_dim, split, size, mean, std).eval()
    frozen = ("visual.conv1.", "visual.class_embedding", "visual.positional_embedding", "visual.ln_pre.")
    trainable = tuple(
        n for n, _ in top.named_parameters()
        if n.startswith("visual.") and not (split > 0 and (n.startswith(frozen) or _block_of(n) < split))
    )  # fmt: skip
    set_trainable(top, trainable)
    return Backbone(
        name=name or model_name,
        trunk=ClipTrunk(visual, split, size, mean, std).eval(),
        top=top,
        trainable=trainable,
        projection=clip_projection_name(visual, prefix="visual."),
        bias="bias",
        embed_dim=int(embed_dim),
        image_size=size,
        mean=mean,
        std=std,
        settings={
            "open_clip": model_name,
            "image_size": size,
            "trainable_from": split,
            "pretrained": str(pretrained),
            "seed": seed if pretrained is None else None,
        },
        model=model,
        pixels_in_top=True,
    )


def _block_of(name: str) -> int:
    """The block index in ``visual.transformer.resblocks.<i>.…``; a large number for parameters after the blocks."""
    parts = name.split(".")
    if parts[1:3] == ["transformer", "resblocks"]:
        return int(parts[3])
    return 1 << 30


def build_tiny_clip(*, image_size: int | None = None, seed: int = 0, trainable_from=None) -> Backbone:
    """The tiny random ViT (width 64, 2 layers, 4 heads, patch 8, image 32, embed 32) as a Backbone."""
    return build_clip(
        register_tiny_clip(),
        image_size=image_size,
        seed=seed,
        name="tiny-clip",
        trainable_from=trainable_from,
    )


CLIP_MODELS = {"clip-vit-b-32": "ViT-B-32", "clip-vit-b-16": "ViT-B-16", "clip-vit-l-14": "ViT-L-14"}
"""Backbone name -> open_clip model name. L/14 works the same way (its projection is found by role)."""


def clip_builder(model_name: str, backbone: str) -> Callable[..., Backbone]:
    """The `BACKBONES` entry of `backbone`: `build_clip` of open_clip's `model_name`, OpenAI weights by default."""
    def build(*, image_size=None, trainable_from=None, pretrained: str = "openai", seed: int = 0):
        return build_clip(
            model_name, pretrained=None if pretrained == "random" else pretrained, image_size=image_size, seed=seed, name=backbone,
            trainable_from=trainable_from,
        )  # fmt: skip

    build.__doc__ = f"open_clip {model_name}, OpenAI weights by default (`pretrained`: a tag, a checkpoint path, or 'random')."
    return build
