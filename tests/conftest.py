"""Shared fixtures: small real models and data the project makes itself (no downloads)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("ring", "necklace", "earring", "bracelet", "pendant", "brooch", "watch", "empty")


def _source_key(*globs: str) -> str:
    """A digest of the sources a cached artifact was made from: change the code, get a new artifact."""
    h = hashlib.sha256()
    for pattern in globs:
        for path in sorted(ROOT.glob(pattern)):
            h.update(path.relative_to(ROOT).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


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
