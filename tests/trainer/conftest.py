"""Fixtures of the trainer tests: a tiny synthetic set and one tiny run shared by the output tests."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import TINY_RECIPE

TINY_CLASSES = ("ring", "watch", "empty")


def make_tiny(out: Path, per_class: int = 12, size: int = 32, seed: int = 0) -> Path:
    """A 3-class synthetic image-folder set (train/ + val/)."""
    from trainer.synth import make_images

    return make_images(out, classes=TINY_CLASSES, per_class=per_class, size=size, val_fraction=0.25, seed=seed)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models gain nothing from a second thread, and two spinning OpenMP threads crawl when the
    shared machine is busy; one keeps these tests quick either way."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """The tiny set, read-only for tests (copy it before changing it)."""
    return make_tiny(tmp_path_factory.mktemp("tiny") / "data")


@pytest.fixture()
def tiny_copy(tiny_data, tmp_path) -> Path:
    """A private copy of the tiny set that a test may damage."""
    return Path(shutil.copytree(tiny_data, tmp_path / "data"))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A 2-epoch ResNet-18 run at 32 px on the tiny set, with one corrupt file planted in it."""
    import torch

    from trainer.train import train

    root = tmp_path_factory.mktemp("tiny_run")
    data = make_tiny(root / "data")
    (data / "train" / "ring" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    torch.set_num_threads(1)
    return train(data=str(data), out=str(root / "run"), **TINY_RECIPE)
