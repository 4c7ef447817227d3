"""Shared fixtures: small real models and data the project makes itself (no downloads)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from edge.contracts import DEFAULT_CLASSES as CLASSES

_BUILD: subprocess.Popen | None = None   # the synthetic test model's background build, when one was started


@pytest.fixture(scope="session")
def untrained_onnx(tmp_path_factory) -> Path:
    """A randomly initialised ResNet-18 (64 px, the 8 default classes) exported with its manifest.

    For tests about plumbing (runtimes, bundles, shapes), not accuracy.
    """
    import onnx
    import torch
    import torchvision

    from edge.manifest import InputSpec, Manifest, embed_manifest

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=len(CLASSES)).eval()
    out = tmp_path_factory.mktemp("untrained") / "model.onnx"
    torch.onnx.export(model, (torch.randn(1, 3, 64, 64),), str(out), input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=17, dynamo=False)
    manifest = Manifest(name="untrained", version="0.0.1", arch="resnet18", classes=CLASSES,
                        input=InputSpec(size=(64, 64)))
    proto = onnx.load(str(out))
    onnx.save(embed_manifest(proto, manifest), str(out))
    manifest.save(out.parent / "manifest.json")
    return out


class TrainedRun:
    """What ``trained_run`` gives: the run directory, its files, and the dataset it was trained on."""

    def __init__(self, root: Path) -> None:
        import json

        self.root = root
        self.run_dir = root / "run"            # model.onnx, manifest.json, best.pt, last.pt, report.json ...
        self.data_dir = root / "data"          # data/train/<class>/*.jpg and data/val/<class>/*.jpg
        self.train_dir = self.data_dir / "train"
        self.val_dir = self.data_dir / "val"
        self.onnx = self.run_dir / "model.onnx"
        self.manifest_path = self.run_dir / "manifest.json"
        self.checkpoint = self.run_dir / "best.pt"
        self.report = json.loads((self.run_dir / "report.json").read_text())
        self.classes = tuple(self.report["classes"])
        self.accuracy = float(self.report["accuracy"])

    def __repr__(self) -> str:
        return f"TrainedRun({self.root}, accuracy={self.accuracy:.4f})"


def _needs_trained_run(item: pytest.Item) -> bool:
    return "trained_run" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list) -> None:
    """Tests of the trained model run last, so that its build (when not cached) overlaps all the others."""
    items.sort(key=_needs_trained_run)   # stable: each group keeps its order


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start building the synthetic test model in the background if a collected test needs it."""
    global _BUILD
    from tests import synthetic_model

    if not session.config.option.collectonly and any(map(_needs_trained_run, session.items)) \
            and synthetic_model.find_cached() is None:
        _BUILD = synthetic_model.start_build()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A build that no test waited for (a failed or interrupted run) is stopped, not left behind: ours, and the
    one ``make test`` started before pytest (its pid in ``prebuild.pid``)."""
    from tests import synthetic_model

    if _BUILD is not None and _BUILD.poll() is None:
        _BUILD.terminate()
        _BUILD.wait()
    synthetic_model.stop_prebuild()


@pytest.fixture(scope="session")
def trained_run() -> TrainedRun:
    """A ResNet-18 trained from scratch on the 8 default synthetic classes (tests/synthetic_model.py)."""
    from tests import synthetic_model

    return TrainedRun(synthetic_model.wait_for(_BUILD))
