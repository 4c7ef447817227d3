"""Calibration fixtures: small class-folder image sets and one calibrated model directory."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import CLASSES


def make_images(root: Path, per_class: int, seed: int = 0, classes=CLASSES, size=(48, 56)) -> Path:
    """Class folders of simple synthetic photos (a tinted background with a coloured disc)."""
    rng = np.random.default_rng(seed)
    h, w = size
    for ci, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = np.full((h, w, 3), 30 + 25 * ci, np.uint8)
            centre = (int(rng.integers(8, w - 8)), int(rng.integers(8, h - 8)))
            cv2.circle(img, centre, int(rng.integers(4, 12)), [int(v) for v in rng.integers(0, 255, 3)], -1)
            cv2.imwrite(str(root / name / f"{i:03d}.png"), img)
    return root


@pytest.fixture(scope="session")
def calib_images(tmp_path_factory) -> Path:
    """6 images in each of the 8 class folders, plus one corrupt file."""
    root = make_images(tmp_path_factory.mktemp("calib") / "images", per_class=6)
    (root / "ring" / "zz-corrupt.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    return root


@pytest.fixture(scope="session")
def val_images(tmp_path_factory) -> Path:
    return make_images(tmp_path_factory.mktemp("val") / "val", per_class=2, seed=1)


@pytest.fixture(scope="session")
def calibrated(untrained_onnx, calib_images, val_images, tmp_path_factory) -> Path:
    """The untrained model calibrated for every target (minmax, 40 images), report included."""
    from calibration.pipeline import CalibrateOptions, run

    out = tmp_path_factory.mktemp("calibrated") / "model"
    # An untrained net's top-1 is arbitrary, so the gate is opened wide: these tests are about plumbing.
    run(CalibrateOptions(model=untrained_onnx, images=calib_images, out=out, count=40, method="minmax",
                         val=val_images, max_drop=100.0, bench_iters=1, threads=1))
    return out


@pytest.fixture(scope="session")
def tensorrt_gpu() -> None:
    """Skip (with the reason) unless TensorRT, pycuda and a CUDA device are all here.

    Session-scoped and listed first, so a skipped GPU test never builds the `calibrated` fixture.
    """
    from edge.runtimes.tensorrt_rt import TensorRtRuntime

    reason = TensorRtRuntime.unavailable_reason()
    if reason:
        pytest.skip(f"needs TensorRT + pycuda + an NVIDIA GPU: {reason}")
