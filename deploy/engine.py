"""On-device checks of a model directory: TensorRT engine build (where TensorRT exists) and a smoke inference."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from edge.errors import BundleError, GemsightError

logger = logging.getLogger(__name__)

ENGINE_PRECISIONS = ("int8", "fp16", "fp32")


def tensorrt_importable() -> bool:
    """True when ``import tensorrt`` works (JetPack, or a TensorRT wheel on an NVIDIA machine)."""
    try:
        import tensorrt  # noqa: F401,PLC0415
    except Exception:  # a broken install (missing libnvinfer) raises more than ImportError
        return False
    return True


def ensure_engine_for(model_dir: str | Path, engines_dir: str | Path, max_batch: int,
                      precision: str = "auto") -> Path | None:
    """Build or look up the TensorRT engine of a model directory; ``None`` where TensorRT is absent.

    Engines are cached by calibration under a key of model digest, TensorRT version, GPU and
    precision, so a flash of an already-built model and every boot after the first are look-ups.

    Raises:
        BundleError: the build failed (the calibration error's message included).
    """
    if not tensorrt_importable():
        logger.info("TensorRT not importable here: no engine to build")
        return None
    from calibration.tensorrt import ensure_engine  # noqa: PLC0415 - needs TensorRT

    prec = precision if precision in ENGINE_PRECISIONS else "int8"
    t0 = time.perf_counter()
    try:
        engine = ensure_engine(Path(model_dir), Path(engines_dir), max_batch, prec)
    except GemsightError as exc:
        raise BundleError(f"TensorRT engine build failed for {model_dir}: {exc}") from exc
    logger.info("TensorRT engine %s ready in %.1fs", engine, time.perf_counter() - t0)
    return Path(engine)


def smoke_test(model_dir: str | Path, runtime: str = "auto", precision: str = "auto", batch: int = 2,
               options: dict | None = None) -> dict:
    """Load the model the way the edge will and run one batch; check the output.

    The batch holds zeros and standard-normal noise of the manifest's input size; the output must be
    ``batch x classes`` and finite.

    Returns:
        ``{"backend", "precision", "load_s", "infer_s"}``.

    Raises:
        BundleError: the model does not load, or its output is the wrong shape or not finite.
    """
    from edge.runtimes import create_runtime  # noqa: PLC0415

    t0 = time.perf_counter()
    try:
        rt = create_runtime(runtime, model_dir, precision=precision, **(options or {}))
    except GemsightError as exc:
        raise BundleError(f"smoke test: the model in {model_dir} does not load with runtime '{runtime}': {exc}") from exc
    t1 = time.perf_counter()
    with rt:
        h, w = rt.manifest.input.size
        x = np.zeros((batch, 3, h, w), dtype=np.float32)
        x[1:] = np.random.default_rng(0).standard_normal((batch - 1, 3, h, w), dtype=np.float32)
        try:
            out = rt(x)
        except GemsightError as exc:
            raise BundleError(f"smoke test: inference failed with {rt.name}: {exc}") from exc
        t2 = time.perf_counter()
        if out.shape != (batch, rt.manifest.num_classes):
            raise BundleError(f"smoke test: output shape {out.shape}, expected ({batch}, {rt.manifest.num_classes})")
        if not np.isfinite(out).all():
            raise BundleError(f"smoke test: {rt.name} produced non-finite outputs for {model_dir}")
        result = {"backend": rt.name, "precision": rt.precision, "load_s": t1 - t0, "infer_s": t2 - t1}
    logger.info("smoke test passed: %s %s, load %.2fs, batch of %d in %.3fs", result["backend"],
                result["precision"], result["load_s"], batch, result["infer_s"])
    return result
