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

    from edge.runtimes.artifacts import select_artifact  # noqa: PLC0415

    # Resolve "auto" exactly as the edge's TensorRT runtime will, or it would look under another key.
    prec = select_artifact(model_dir, "tensorrt", precision).precision if precision not in ENGINE_PRECISIONS \
        else precision
    t0 = time.perf_counter()
    try:
        engine = ensure_engine(Path(model_dir), Path(engines_dir), max_batch, prec)
    except GemsightError as exc:
        raise BundleError(f"TensorRT engine build failed for {model_dir}: {exc}") from exc
    logger.info("TensorRT engine %s ready in %.1fs", engine, time.perf_counter() - t0)
    return Path(engine)


def _open(model_dir: Path, runtime: str | None, precision: str | None, config_path: Path | None):
    """The runtime the edge itself would open: through edge.model_loader with the device config
    (its runtime options and model pins apply), else by name; ``runtime``/``precision`` override."""
    from edge.runtimes import create_runtime  # noqa: PLC0415

    if config_path is not None and config_path.is_file() and runtime is None and precision is None:
        from edge.config import load_config  # noqa: PLC0415
        from edge.model_loader import open_model  # noqa: PLC0415

        config = load_config(config_path)
        config = config.model_copy(update={"model": config.model.model_copy(update={"path": model_dir})})
        return open_model(config, str(config_path)).runtime
    return create_runtime(runtime or "auto", model_dir, precision=precision or "auto")


def smoke_test(model_dir: str | Path, runtime: str | None = None, precision: str | None = None,
               config_path: str | Path | None = None, batch: int = 2) -> dict:
    """Load the model the way the edge will and run one batch; check the output.

    With a device config (and no override) the model is opened by :func:`edge.model_loader.open_model`,
    so the config's runtime options and its class / input-size pins are checked too. The batch
    holds zeros and standard-normal noise of the manifest's input size; the output must be
    ``batch x classes`` and finite.

    Returns:
        ``{"backend", "precision", "load_s", "infer_s"}``.

    Raises:
        BundleError: the model does not load, does not fit the config, or its output is the wrong
            shape or not finite.
    """
    model_dir = Path(model_dir)
    t0 = time.perf_counter()
    try:
        rt = _open(model_dir, runtime, precision, Path(config_path) if config_path else None)
    except GemsightError as exc:
        raise BundleError(f"smoke test: the model in {model_dir} does not load: {exc}") from exc
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
