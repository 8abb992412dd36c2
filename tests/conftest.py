"""Shared test set-up: offline open_clip, a private cache folder, one thread per op (2-core machines)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before anything imports open_clip

import colab_support  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from holomerge_lab.experiment.pipeline import RunConfig, prepare  # noqa: E402


def small_config(**overrides) -> RunConfig:
    """A real run in seconds: the 8×8 digits through the real EfficientNet-Lite0, 3 tasks, a few steps."""
    settings = dict(
        stream="split-digits", tasks=3, train_per_task=40, test_per_task=20, steps=6, lr=1e-3, batch_size=16,
        align_steps=3,
    )  # fmt: skip
    return RunConfig(**{**settings, **overrides})


@pytest.fixture(scope="session")
def small_prepared():
    return prepare(small_config(), progress=False)


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


@pytest.hookimpl(trylast=True)  # after -m / -k have deselected
def pytest_collection_modifyitems(config, items):
    """The Colab install takes minutes of pip: begun now, it runs beside the rest of the suite."""
    if (colab_support.ROOT / ".git").exists() and any(item.get_closest_marker("install") for item in items):
        colab_support.start()


def pytest_sessionfinish(session, exitstatus):
    colab_support.stop()
