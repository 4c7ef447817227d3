"""On-device checks of a model directory: TensorRT engine build (where TensorRT exists) and a smoke inference.

Flash, ``build-engine`` and the smoke test agree on one :class:`EngineTarget` (cache directory,
max batch, precision, builder options, CUDA device), made once from the command line and the
device config, so the smoke test opens exactly the engine that was just built or found.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import BundleError, GemsightError
from edge.runtimes.engine_cache import BuildOptions

logger = logging.getLogger(__name__)

ENGINE_PRECISIONS = ("int8", "fp16", "fp32")


@dataclass(frozen=True)
class EngineTarget:
    """Where and how the TensorRT engine of a model is built and looked up on this device."""

    cache_dir: Path
    max_batch: int                          # edge.config.device.engine_max_batch unless --max-batch says otherwise
    precision: str = "auto"
    options: BuildOptions = field(default_factory=BuildOptions)
    device_index: int = 0

    def runtime_options(self) -> dict[str, Any]:
        """The TensorRT runtime options that find this engine (see edge.runtimes.tensorrt_rt)."""
        return {"engine_cache": str(self.cache_dir), "max_batch": int(self.max_batch), "device": self.device_index,
                "workspace_mb": self.options.workspace_mb, "fp16_fallback": self.options.fp16_fallback,
                "dla_core": self.options.dla_core}


def tensorrt_importable() -> bool:
    """True when ``import tensorrt`` works (JetPack, or a TensorRT wheel on an NVIDIA machine)."""
    try:
        import tensorrt  # noqa: F401,PLC0415
    except Exception:  # a broken install (missing libnvinfer) raises more than ImportError
        return False
    return True


def ensure_engine_for(model_dir: str | Path, target: EngineTarget, rebuild: bool = False) -> Path | None:
    """Build or look up the TensorRT engine of a model directory; ``None`` where TensorRT is absent.

    Engines are cached under a key of model digest, TensorRT/CUDA/L4T versions, GPU, DLA core,
    precision, max batch and builder options, so a flash of an already-built model and every boot
    after the first are look-ups (each hit deserialized once; a stale one is rebuilt).

    Raises:
        BundleError: the build failed (the calibration error's message included).
    """
    if not tensorrt_importable():
        logger.info("TensorRT not importable here: no engine to build")
        return None
    from calibration.tensorrt import ensure_engine  # noqa: PLC0415 - needs TensorRT

    t0 = time.perf_counter()
    try:
        engine = ensure_engine(Path(model_dir), Path(target.cache_dir), target.max_batch,
                               resolve_precision(model_dir, target.precision), device_index=target.device_index,
                               options=target.options, rebuild=rebuild)
    except GemsightError as exc:
        raise BundleError(f"TensorRT engine build failed for {model_dir}: {exc}") from exc
    logger.info("TensorRT engine %s ready in %.1fs", engine, time.perf_counter() - t0)
    return Path(engine)


def resolve_precision(model_dir: str | Path, precision: str) -> str:
    """``auto`` resolved exactly as the edge's TensorRT runtime resolves it (else it looks under another key)."""
    if precision in ENGINE_PRECISIONS:
        return precision
    from edge.runtimes.artifacts import select_artifact  # noqa: PLC0415

    return select_artifact(model_dir, "tensorrt", precision).precision or "fp32"


def _pin_engine(config, target: EngineTarget):
    """``config`` with its TensorRT options pointing at ``target``'s cache directory and max batch."""
    update = {"engine_cache": Path(target.cache_dir), "max_batch": int(target.max_batch)}
    runtime = config.runtime
    if runtime.name == "tensorrt":
        runtime = runtime.model_copy(update={"options": runtime.options.model_copy(update=update)})
    elif runtime.name == "auto":
        trt = runtime.options.tensorrt.model_copy(update=update)
        runtime = runtime.model_copy(update={"options": runtime.options.model_copy(update={"tensorrt": trt})})
    return config.model_copy(update={"runtime": runtime})


def _open(model_dir: Path, runtime: str | None, precision: str | None, config_path: Path | None,
          target: EngineTarget | None):
    """The runtime the edge itself would open: through edge.loop.model with the device config
    (its runtime options and model pins apply), else by name; ``runtime``/``precision`` override.
    Either way a TensorRT runtime looks in ``target``'s cache with its max batch and options."""
    from edge.runtimes.registry import create_runtime, resolve_runtime_name  # noqa: PLC0415

    if config_path is not None and config_path.is_file() and runtime is None and precision is None:
        from edge.config.device import load_config  # noqa: PLC0415
        from edge.loop.model import open_model  # noqa: PLC0415

        config = load_config(config_path)
        config = config.model_copy(update={"model": config.model.model_copy(update={"path": model_dir})})
        if target is not None:
            config = _pin_engine(config, target)
        return open_model(config, str(config_path)).runtime
    resolved = resolve_runtime_name(runtime or "auto")
    options = target.runtime_options() if resolved == "tensorrt" and target is not None else {}
    if precision is None:  # the engine's precision for TensorRT; the other backends pick as the edge does
        precision = target.precision if resolved == "tensorrt" and target is not None else "auto"
    return create_runtime(resolved, model_dir, precision=precision, **options)


def smoke_test(model_dir: str | Path, runtime: str | None = None, precision: str | None = None,
               config_path: str | Path | None = None, batch: int = 2, target: EngineTarget | None = None) -> dict:
    """Load the model the way the edge will and run one batch; check the output.

    With a device config (and no override) the model is opened by :func:`edge.loop.model.open_model`,
    so the config's runtime options and its class / input-size pins are checked too. A TensorRT
    runtime is pointed at ``target`` (the engine flash just built or found). The batch is a black
    image and random-noise images at the manifest's input size, made by the runtime's own batch writer
    as the loop makes it; the output must be ``batch x classes`` and finite.

    Returns:
        ``{"backend", "precision", "load_s", "infer_s"}``.

    Raises:
        BundleError: the model does not load, does not fit the config, or its output is the wrong
            shape or not finite.
    """
    model_dir = Path(model_dir)
    t0 = time.perf_counter()
    try:
        rt = _open(model_dir, runtime, precision, Path(config_path) if config_path else None, target)
    except GemsightError as exc:
        raise BundleError(f"smoke test: the model in {model_dir} does not load: {exc}") from exc
    t1 = time.perf_counter()
    with rt:
        h, w = rt.manifest.input.size
        rng = np.random.default_rng(0)
        images = [np.zeros((h, w, 3), np.uint8)] + [rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                                                    for _ in range(batch - 1)]
        x = rt.batch_writer().batch(images)   # the batch the loop would make for this runtime (float32 or uint8)
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
