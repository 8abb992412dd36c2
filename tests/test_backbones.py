"""Backbones: real EfficientNet-Lite0 weights, the trunk/top split, cached trunk features, the tiny CLIP tower."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before open_clip is imported anywhere: nothing may download

import time

import numpy as np
import pytest
import torch
from torch.func import functional_call, jvp
from torch.nn.attention import SDPBackend, sdpa_kernel

from holomerge_lab.errors import UserError
from holomerge_lab.models.backbone import IMAGENET_MEAN, IMAGENET_STD, preprocess_images
from holomerge_lab.models.clip import build_clip, register_tiny_clip
from holomerge_lab.models.effnet import effnet_lite0_weights_path, load_efficientnet_lite0
from holomerge_lab.models.features import features_key, trunk_features
from holomerge_lab.models.zoo import build_backbone


@pytest.fixture(scope="module")
def effnet():
    return build_backbone("effnet-lite0")


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    return torch.from_numpy(np.round(d.images[:48] * (255 / 16)).astype(np.uint8))  # [48, 8, 8] uint8


@pytest.fixture(scope="module")
def tiny_clip():
    t = time.perf_counter()
    bb = build_backbone("tiny-clip")
    return bb, time.perf_counter() - t


# ---------------------------------------------------------------------------------------------------- effnet-lite0


def test_weights_come_from_the_installed_wheel():
    path = effnet_lite0_weights_path()
    assert path.is_file() and path.name == "efficientnet-lite0-57934424.pth"
    assert "site-packages" in str(path) or "dist-packages" in str(path)


def test_real_imagenet_weights_classify_a_real_photo():
    """A random init gives ~1/1000 to every class; the real weights call scikit-learn's temple photo a building."""
    from sklearn.datasets import load_sample_image

    a = load_sample_image("china.jpg")
    h, w, _ = a.shape
    s = min(h, w)
    a = np.ascontiguousarray(a[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s])
    model = load_efficientnet_lite0(224)
    x = preprocess_images(a[None], 224, IMAGENET_MEAN, IMAGENET_STD)
    with torch.no_grad():
        p = model(x).softmax(-1)[0]
    top = int(p.argmax())
    # 442 bell cote, 483 castle, 538 dome, 698 palace, 975 lakeside
    assert top in {442, 483, 538, 698}, top
    assert p[top] > 0.2


def test_trunk_then_top_equals_the_pooled_features(effnet, digits):
    """The trunk runs channels-last, the reference does not: they agree up to float rounding."""
    x = effnet.preprocess(digits)
    assert x.shape == (48, 3, 64, 64)
    with torch.no_grad():
        z = effnet.top(effnet.trunk(x))
        ref = effnet.model.extract_features(x).mean(dim=(-2, -1))
    assert z.shape == (48, 1280) and effnet.embed_dim == 1280
    torch.testing.assert_close(z, ref, rtol=1e-4, atol=1e-4)
    assert z.std() > 0.1  # not a constant function
    torch.testing.assert_close(effnet.embed(digits, batch_size=20), z, rtol=1e-4, atol=1e-4)


def test_moving_the_split_keeps_the_function(effnet, digits):
    deep = build_backbone("effnet-lite0", trainable_from=11)
    x = effnet.preprocess(digits)
    with torch.no_grad():
        torch.testing.assert_close(deep.top(deep.trunk(x)), effnet.top(effnet.trunk(x)), rtol=1e-4, atol=1e-4)
    assert deep.settings != effnet.settings
    n_deep = sum(p.numel() for n, p in deep.top.named_parameters() if n in deep.trainable)
    assert n_deep > 1_009_792
    assert "_blocks.11._expand_conv.weight" in deep.trainable


def test_trainable_parameters(effnet):
    named = dict(effnet.top.named_parameters())
    n = sum(named[k].numel() for k in effnet.trainable)
    assert n == 1_009_792  # block 15 (expand, depthwise, project) + conv_head: "1.01 M"
    assert set(effnet.trainable) == {
        "_blocks.15._expand_conv.weight",
        "_blocks.15._depthwise_conv.weight",
        "_blocks.15._project_conv.weight",
        "_conv_head.weight",
    }
    for k, p in named.items():
        assert p.requires_grad == (k in effnet.trainable), k
    assert not any(p.requires_grad for p in effnet.trunk.parameters())
    assert effnet.projection == "_conv_head.weight" and effnet.projection in effnet.trainable
    assert effnet.bias not in effnet.trainable and torch.all(named[effnet.bias] == 0)
    assert named[effnet.bias].shape == (1280,)


def test_top_and_trunk_stay_in_eval_mode(effnet):
    effnet.top.train()
    effnet.trunk.train()
    assert not any(m.training for m in effnet.top.modules())
    assert not any(m.training for m in effnet.trunk.modules())


def test_top_jvp_matches_finite_difference(effnet, digits):
    h = effnet.trunk(effnet.preprocess(digits[:4])).double()
    top = effnet.top.double()
    try:
        p0 = effnet.params()
        g = torch.Generator().manual_seed(0)
        d = {k: 1e-2 * torch.randn(v.shape, generator=g, dtype=v.dtype) for k, v in p0.items()}
        f = lambda p: functional_call(top, p, (h,))  # noqa: E731
        _, t = jvp(f, (p0,), (d,))
        eps = 1e-5
        fd = (f({k: p0[k] + eps * d[k] for k in p0}) - f({k: p0[k] - eps * d[k] for k in p0})) / (2 * eps)
        assert (t - fd).abs().max() <= 1e-6 * t.abs().max()
    finally:
        top.float()


def test_preprocess_shapes_and_normalisation(effnet):
    gray = torch.full((2, 28, 28), 255, dtype=torch.uint8)
    rgb = torch.full((2, 20, 30, 3), 255, dtype=torch.uint8)
    for img in (gray, rgb, gray.numpy()):
        x = effnet.preprocess(img)
        assert x.shape == (2, 3, 64, 64) and x.dtype == torch.float32
        expect = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
        torch.testing.assert_close(x[0, :, 10, 10], expect)
    with pytest.raises(UserError):
        effnet.preprocess(torch.zeros(2, 28, 28))  # float input: not raw pixels


def test_unknown_backbone_lists_the_names():
    with pytest.raises(UserError, match="effnet-lite0.*tiny-clip"):
        build_backbone("resnet-9000")
    with pytest.raises(UserError):
        build_backbone("effnet-lite0", trainable_from=16)


# ---------------------------------------------------------------------------------------------------- trunk_features


@pytest.fixture
def counted(effnet, monkeypatch, tmp_path):
    """The effnet backbone with a counter on its trunk, and the feature cache in a temporary folder."""
    monkeypatch.setenv("HOLOMERGE_CACHE", str(tmp_path))
    monkeypatch.setattr("holomerge_lab.models.features.features_dir", lambda: tmp_path / "features")
    calls = []
    forward = effnet.trunk.forward
    monkeypatch.setattr(effnet.trunk, "forward", lambda x: calls.append(len(x)) or forward(x))
    return effnet, calls, tmp_path / "features"


def test_trunk_features_cache(counted, digits):
    bb, calls, folder = counted
    cold = trunk_features(bb, digits, batch_size=20, progress=False)
    assert calls == [20, 20, 8]
    fresh = trunk_features(bb, digits, batch_size=20, cache=False, progress=False)
    torch.testing.assert_close(cold, fresh, rtol=0, atol=0)
    assert cold.dtype == torch.float32 and cold.shape == (48, 192, 2, 2)
    calls.clear()
    warm = trunk_features(bb, digits, progress=False)
    assert calls == []  # read from disk: the trunk never ran
    torch.testing.assert_close(warm, cold, rtol=0, atol=0)
    files = sorted(p.name for p in folder.iterdir())
    assert len(files) == 1 and files[0].endswith(".npz")  # no temp file left behind
    # the cached tensor feeds autograd (no inference-mode tensors escape)
    w = dict(bb.top.named_parameters())["_conv_head.weight"]
    bb.top(cold[:2]).sum().backward()
    assert w.grad is not None
    w.grad = None


def test_cache_key_depends_on_content_shape_and_settings(effnet, digits):
    k = features_key(effnet, digits)
    changed = digits.clone()
    changed[0, 0, 0] ^= 1
    assert features_key(effnet, changed) != k
    assert features_key(effnet, digits[:47]) != k
    assert features_key(effnet, digits.reshape(48, 4, 16)) != k
    assert features_key(effnet, digits.numpy()) == k
    deep = build_backbone("effnet-lite0", trainable_from=11)
    assert features_key(deep, digits) != k


# ---------------------------------------------------------------------------------------------------- tiny-clip


def test_tiny_clip_builds_offline_and_fast(tiny_clip, digits):
    bb, seconds = tiny_clip
    assert seconds < 15
    assert bb.image_size == 32 and bb.embed_dim == 32
    x = bb.preprocess(digits[:5])
    assert x.shape == (5, 3, 8, 8) and x.dtype == torch.uint8  # CLIP: raw pixels; the top resizes them
    with torch.no_grad():
        z = bb.top(bb.trunk(x))
    assert z.shape == (5, 32)
    visual = dict(bb.top.visual.named_parameters())
    assert set(bb.trainable) == {"visual." + k for k in visual}
    assert (
        bb.projection == "visual.proj"
        and dict(bb.top.named_parameters())[bb.projection] is bb.top.visual.proj
    )
    assert bb.bias == "bias" and bb.bias not in bb.trainable


def test_tiny_clip_is_seeded():
    a, b = build_backbone("tiny-clip"), build_backbone("tiny-clip", seed=1)
    c = build_backbone("tiny-clip")
    pa, pb, pc = a.params(), b.params(), c.params()
    assert not torch.equal(pa["visual.proj"], pb["visual.proj"])
    assert all(torch.equal(pa[k], pc[k]) for k in pa)


def test_tiny_clip_jvp_under_math_backend(tiny_clip, digits):
    bb, _ = tiny_clip
    top = bb.top.double()
    try:
        x = bb.trunk(bb.preprocess(digits[:6])).double()
        p0 = bb.params()
        g = torch.Generator().manual_seed(0)
        d = {k: torch.randn(v.shape, generator=g, dtype=v.dtype) for k, v in p0.items()}
        f = lambda p: functional_call(top, p, (x,))  # noqa: E731
        with sdpa_kernel(SDPBackend.MATH):
            _, t = jvp(f, (p0,), (d,))
            eps = 1e-6
            fd = (f({k: p0[k] + eps * d[k] for k in p0}) - f({k: p0[k] - eps * d[k] for k in p0})) / (2 * eps)
        assert t.shape == (6, 32)
        assert (t - fd).abs().max() <= 1e-6 * t.abs().max()
        assert torch.backends.mha.get_fastpath_enabled()  # the top restored the global setting
    finally:
        top.float()


def test_pretrained_tag_offline_fails_fast_with_a_user_error():
    t = time.perf_counter()
    with pytest.raises(UserError, match="local"):
        build_clip(register_tiny_clip(), pretrained="no-such-tag")
    assert time.perf_counter() - t < 30
