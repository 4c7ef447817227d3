"""Calibration fixtures: small class-folder image sets and one calibrated model directory."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import make_images


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
