"""The `Backbone` record and the pieces every backbone family shares: the trunk/top cut, pixel preprocessing,
device and precision.

    images (uint8) --preprocess--> x --trunk (frozen, cached)--> h --top (fine-tuned)--> embedding [B, D]

Only `top` is fine-tuned (standard or in the tangent space), so the trunk's output is computed once per data set
and cached on disk (`models.features`). Both modules always stay in eval mode: BatchNorm uses its frozen running
statistics and drop-connect / dropout are off, so `top` is one deterministic function of (params, h), which the
linearization (torch.func.jvp + functional_call) needs.

The families build on this module (`models.effnet`, `models.clip`) and `models.zoo` builds them by name; this
module imports none of them, so it is the one every other module of the floor can import.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import SettingError, UserError, check_choice

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
"""EfficientNet's ImageNet normalisation: the `Backbone` defaults (CLIP's own are in `models.clip`)."""


# --------------------------------------------------------------------------------------------------------------------
# The Backbone record
# --------------------------------------------------------------------------------------------------------------------


class AlwaysEval(nn.Module):
    """A module that refuses training mode: `.train()` leaves it (and its children) in eval mode."""

    def train(self, mode: bool = True):  # noqa: D401 - same signature as nn.Module.train
        return super().train(False)


class FrozenTrunk(AlwaysEval):
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


# --------------------------------------------------------------------------------------------------------------------
# Pixels: layout, resize and normalisation, open_clip's crops
# --------------------------------------------------------------------------------------------------------------------


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


def set_trainable(top: nn.Module, trainable: tuple[str, ...]) -> None:
    """Let fine-tuning train exactly the `trainable` parameters of `top` (by name); freeze the rest."""
    names = dict(top.named_parameters())
    missing = [k for k in trainable if k not in names]
    assert not missing, f"trainable names not in top: {missing}"
    for k, p in names.items():
        p.requires_grad_(k in trainable)


# --------------------------------------------------------------------------------------------------------------------
# Device and precision
# --------------------------------------------------------------------------------------------------------------------

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def resolve_device(device: str = "auto") -> torch.device:
    """ "auto": the CUDA GPU when there is one, else the CPU; else a device this machine has ("cpu", "cuda",
    "cuda:1", "mps"), checked now so that a run never starts on a device it cannot use."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        found = torch.device(device)
    except RuntimeError as e:
        raise SettingError("device", f"is {device!r}, not a torch device; use 'auto', 'cpu' or 'cuda'") from e
    if found.type == "cuda" and not torch.cuda.is_available():
        raise SettingError(
            "device", f"is {device!r}, but torch finds no CUDA GPU on this machine; use 'auto' or 'cpu'"
        )
    if found.type == "cuda" and (found.index or 0) >= torch.cuda.device_count():
        raise SettingError("device", f"is {device!r}, but this machine has {torch.cuda.device_count()} CUDA GPU(s); "
                        "use 'cuda' or 'auto'")  # fmt: skip
    if found.type == "mps" and not torch.backends.mps.is_available():
        raise SettingError("device", f"is {device!r}, but torch finds no Apple GPU here; use 'auto' or 'cpu'")
    if found.type not in ("cpu", "cuda", "mps"):
        raise SettingError(
            "device",
            f"is {device!r}, which cannot run a model here (only cpu, cuda, mps); use 'auto' or 'cpu'",
        )
    return found


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
