"""The CLIP path on CPU, offline: the tiny open_clip ViT (random weights) through the real loaders and pipeline."""

import os
import pickle
import subprocess
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before open_clip is imported anywhere: nothing may download

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from holomerge_lab import backbones as B
from holomerge_lab import data as D
from holomerge_lab.errors import UserError
from holomerge_lab.heads import TEMPLATES, zero_shot_text_head
from holomerge_lab.linearize import forward_fn
from holomerge_lab.pipeline import PRESETS, RunConfig, prepare, run


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HOLOMERGE_CACHE", str(tmp_path / "cache"))


def _class_images(label: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Noisy images whose mean colour depends on the class: learnable, different per image."""
    rng = np.random.default_rng(seed)
    base = np.stack([(label * 37) % 256, (label * 91) % 256, (label * 53) % 256], -1)[:, None, None, :]
    return np.clip(base + rng.integers(-40, 40, (len(label), size, size, 3)), 0, 255).astype(np.uint8)


@pytest.fixture
def cifar_root(tmp_path):
    """A CIFAR-100 python-version folder (train/test/meta pickles in torchvision's layout), synthetic images."""
    folder = tmp_path / "cifar" / "cifar-100-python"
    folder.mkdir(parents=True)
    names = [f"class_{i}" for i in range(100)]
    for part, per_class, seed in (("train", 4, 0), ("test", 2, 1)):
        labels = np.repeat(np.arange(100), per_class)
        images = _class_images(labels, 32, seed)
        record = {
            "data": images.transpose(0, 3, 1, 2).reshape(len(labels), -1),
            "fine_labels": labels.tolist(),
            "coarse_labels": (labels // 5).tolist(),
        }
        (folder / part).write_bytes(pickle.dumps(record))
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": names, "coarse_label_names": names[:20]}))
    return folder.parent


def _write_tree(folder, classes, files_per_class, name, seed):
    for c, cls in enumerate(classes):
        (folder / cls).mkdir(parents=True, exist_ok=True)
        images = _class_images(np.full(files_per_class, c), 16, seed + c)
        for k, image in enumerate(images):
            Image.fromarray(image).save(folder / cls / f"{name(k)}.png")


def _tiny(**overrides) -> RunConfig:
    settings = dict(
        backbone="tiny-clip", pretrained=None, device="cpu", steps=3, lr=1e-3, batch_size=8, align_steps=2,
        align_parameter="projection", logit_scale=100.0,
    )  # fmt: skip
    return RunConfig(**{**settings, **overrides})


# ------------------------------------------------------------------------------------------------------- data


def test_cifar100_stream_reads_the_pickles_in_the_authors_class_order(cifar_root):
    stream = D.build_stream("cifar100", n_tasks=20, root=cifar_root)
    assert stream.setting == "cil" and len(stream.tasks) == 20
    for t, task in enumerate(stream.tasks):
        assert task.classes == D.CIFAR100_CLASS_ORDER[5 * t : 5 * t + 5]
        assert set(task.train_labels.tolist()) == set(task.classes) and len(task.train_labels) == 20
    expected = _class_images(np.repeat(np.arange(100), 4), 32, 0)  # what was written, by global label
    task = stream.tasks[3]
    for image, label in zip(task.train_images, task.train_labels, strict=True):
        rows = expected[4 * int(label) : 4 * int(label) + 4]
        assert any(np.array_equal(image.numpy(), r) for r in rows)
    assert stream.class_names[70] == "class 70"


def test_cifar100_task_counts_and_missing_files(cifar_root, tmp_path):
    assert [len(D.build_stream("cifar100", n_tasks=n, root=cifar_root).tasks) for n in (10, 50)] == [10, 50]
    with pytest.raises(UserError, match="divide"):
        D.build_stream("cifar100", n_tasks=7, root=cifar_root)
    with pytest.raises(UserError, match="cifar-100-python/train, test, meta"):
        D.build_stream("cifar100", root=tmp_path / "empty")
    with pytest.raises(UserError, match="root/download"):
        D.build_stream("split-digits", root=cifar_root)


def test_imagenet_r_domains_are_filtered_by_exact_file_name_prefix(tmp_path):
    root = tmp_path / "imagenet-r"
    for d, domain in enumerate(
        ("art", "deviantart", "toy")
    ):  # "deviantart" ends with "art": a substring trap
        _write_tree(root, ["goldfish", "zebra"], 5, lambda k, domain=domain: f"{domain}_{k}", seed=100 * d)
    stream = D.build_stream("imagenet-r-domains", root=root)
    assert [t.name for t in stream.tasks] == [
        "domain art",
        "domain toy",
        "domain deviantart",
    ]  # authors' order
    colours = {t.name: t.train_images.float().mean((0, 1, 2)) for t in stream.tasks}
    assert not torch.allclose(colours["domain art"], colours["domain deviantart"])
    art = D.load_image_folder(root, D.FOLDER_IMAGE_SIZE, D.imagenet_r_domain("art"))
    deviant = D.load_image_folder(root, D.FOLDER_IMAGE_SIZE, D.imagenet_r_domain("deviantart"))
    assert len(art.train_labels) + len(art.test_labels) == 10  # 5 per class, not 10: deviantart_* excluded
    assert len(deviant.train_labels) + len(deviant.test_labels) == 10
    assert art.class_names == deviant.class_names == ("goldfish", "zebra")


def test_domain_folders_and_missing_folder_message(tmp_path):
    root = tmp_path / "office31"
    for d, domain in enumerate(("amazon", "webcam")):
        _write_tree(
            root / domain / "images", ["back_pack", "bike", "mug"], 5, lambda k: f"img_{k}", seed=10 * d
        )
    stream = D.build_stream("office-31", root=root)
    assert stream.setting == "dil" and [t.name for t in stream.tasks] == ["domain amazon", "domain webcam"]
    assert stream.class_names == ("back pack", "bike", "mug")
    assert stream.tasks[0].train_images.shape[1:] == (D.FOLDER_IMAGE_SIZE, D.FOLDER_IMAGE_SIZE, 3)
    with pytest.raises(UserError, match="ROOT/<domain>/<class>/<image>"):
        D.build_stream("domainnet", root=tmp_path / "nowhere")
    with pytest.raises(UserError, match="no folder was given"):
        D.build_stream("office-home")


# ------------------------------------------------------------------------------------------------- backbones


@pytest.mark.parametrize("trainable_from", [0, 1])
def test_linearized_forward_equals_plain_forward_at_theta0_and_gradients_flow(trainable_from):
    bb = B.build_backbone("tiny-clip", trainable_from=trainable_from)
    images = _class_images(np.arange(6) % 3, 20, 0)
    x = bb.trunk(bb.preprocess(images))
    theta0 = bb.params()
    plain = forward_fn(bb.top, theta0, tangent=False)(theta0, x)
    linear = forward_fn(bb.top, theta0, tangent=True)(theta0, x)
    assert torch.allclose(linear, plain, atol=1e-5) and torch.allclose(plain, bb.model.visual(
        B.preprocess_images(images, 32, bb.mean, bb.std)), atol=1e-5)  # fmt: skip
    theta = {k: v.clone().requires_grad_(True) for k, v in theta0.items()}
    forward_fn(bb.top, theta0, tangent=True)(theta, x).square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in theta.values())
    assert theta["visual.proj"].grad.abs().sum() > 0
    frozen_blocks = {int(k.split(".")[3]) for k in bb.trainable if ".resblocks." in k}
    assert min(frozen_blocks) == trainable_from and bb.projection == "visual.proj"


def test_pretrained_tag_offline_fails_fast_naming_the_fixes():
    code = (
        "import holomerge_lab.backbones as B\n"
        "try:\n    B.build_backbone('clip-vit-b-32')\n"
        "except B.UserError as e:\n    print('USERERROR', e)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert (
        "USERERROR" in done.stdout and "HF_HUB_OFFLINE" in done.stdout and "local checkpoint" in done.stdout
    )


def test_unreachable_hub_fails_before_any_download(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(B, "_has_network", lambda *a, **k: False)
    with pytest.raises(UserError, match="HF_HUB_OFFLINE=1.*local checkpoint"):
        B.build_backbone("clip-vit-b-16")
    with pytest.raises(UserError, match="neither a file nor a pretrained tag"):
        B.build_backbone("clip-vit-b-16", pretrained="no-such-tag")


# ------------------------------------------------------------------------------------------------------ heads


def test_zero_shot_head_against_a_hand_loop():
    bb = B.build_backbone("tiny-clip")
    tokenizer = open_clip.get_tokenizer(bb.settings["open_clip"])
    names, templates = ["apple", "zebra", "maple tree"], TEMPLATES["cifar100"][:4]
    head = zero_shot_text_head(bb.model, tokenizer, names, templates)
    assert head.shape == (3, bb.embed_dim)
    assert torch.allclose(head.norm(dim=-1), torch.ones(3), atol=1e-6)
    for i, name in enumerate(names):
        total = torch.zeros(bb.embed_dim)
        for template in templates:
            with torch.no_grad():
                e = bb.model.encode_text(tokenizer([template.format(name)]))[0]
            total += e / e.norm()
        assert torch.allclose(head[i], total / total.norm(), atol=1e-5)
    reversed_head = zero_shot_text_head(bb.model, tokenizer, names[::-1], templates)
    assert torch.allclose(reversed_head, head.flip(0), atol=1e-6)
    one = zero_shot_text_head(bb.model, tokenizer, names, templates[:1])
    assert not torch.allclose(one, head)  # the templates are really averaged
    with pytest.raises(UserError, match="'\\{\\}'"):
        zero_shot_text_head(bb.model, tokenizer, names, ["no slot"])


# --------------------------------------------------------------------------------------------------- pipeline


def test_cifar100_end_to_end_with_text_heads(cifar_root):
    config = _tiny(stream="cifar100", data_root=str(cifar_root), tasks=2, train_per_task=24, test_per_task=10)
    prep = prepare(config, progress=False)
    assert prep.train_features[0].dtype == torch.uint8 and prep.center is None
    tokenizer = open_clip.get_tokenizer(prep.backbone.settings["open_clip"])
    for task, head in zip(prep.stream.tasks, prep.heads, strict=True):
        names = [prep.stream.class_names[c] for c in task.classes]
        assert torch.allclose(
            head, zero_shot_text_head(prep.backbone.model, tokenizer, names, TEMPLATES["cifar100"])
        )
    result = run(config, prep, progress=False)
    out = result.to_json()
    assert out["backbone"] == "tiny-clip" and out["stream"] == "cifar100" and len(out["acc_matrix"]) == 2
    assert np.isfinite(result.acc) and all(np.isfinite(v) for v in result.losses[-1])


def test_domain_folder_end_to_end(tmp_path):
    root = tmp_path / "officehome"
    for d, domain in enumerate(("Art", "Real World")):  # "Real World" on disk is the Real_World domain
        _write_tree(root / domain, ["Alarm_Clock", "Bike", "Mug"], 6, lambda k: f"{k:05d}", seed=10 * d)
    config = _tiny(
        stream="office-home", data_root=str(root), train_per_task=12, test_per_task=3, align_steps=1
    )
    result = run(config, progress=False)
    assert result.acc_matrix.shape == (2, 2) and np.isfinite(result.acc)
    assert result.config["precision"] == "fp32"  # CPU: no mixed precision


def test_paper_preset_matches_the_authors_settings():
    paper = RunConfig(preset="paper", backbone="clip-vit-b-16", stream="cifar100").resolve()
    expected = dict(
        alpha=0.4, lr=1e-5, weight_decay=0.1, batch_size=128, warmup_steps=500, cosine=True, grad_clip=1.0,
        epochs=10, steps=None, seed=5, align_parameter="projection", align_lr=1e-7, align_loss="mse",
        align_teacher="previous", logit_scale=100.0, variant="faithful", precision="auto",
    )  # fmt: skip
    assert {k: getattr(paper, k) for k in expected} == expected
    assert PRESETS["paper"]["align_steps"] is None  # one pass over the task's data: the authors' one epoch
    assert B.autocast_dtype("auto", torch.device("cpu")) is None
