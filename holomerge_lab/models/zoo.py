"""The backbones by name: `BACKBONES` maps each name to its family's builder, `build_backbone` builds one.

- ``effnet-lite0``: EfficientNet-Lite0 with its ImageNet weights (`models.effnet`).
- ``clip-vit-b-32``, ``clip-vit-b-16``, ``clip-vit-l-14``: open_clip ViTs; ``tiny-clip``: a tiny random ViT for
  tests (`models.clip`).

Its own module because it imports every family, which in turn import `models.backbone`: the imports run one way.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import UserError, check_choice
from .backbone import Backbone
from .clip import CLIP_MODELS, build_tiny_clip, clip_builder
from .effnet import build_effnet_lite0


def tower_sees_pixels(backbone: str, trainable_from: int | None) -> bool:
    """Whether the trained top of `backbone` takes the raw pixels (CLIP, whole tower trained), so that training
    images can be augmented; otherwise it trains on cached trunk features."""
    return (backbone in CLIP_MODELS or backbone == "tiny-clip") and not trainable_from


BACKBONES: dict[str, Callable[..., Backbone]] = {
    "effnet-lite0": build_effnet_lite0,
    "tiny-clip": build_tiny_clip,
    **{name: clip_builder(model, name) for name, model in CLIP_MODELS.items()},
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
