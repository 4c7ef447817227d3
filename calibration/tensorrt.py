"""TensorRT engine builder (runs on the device that will run the engine).

Two INT8 paths, from the same ranges:

* explicit quantization (TensorRT ≥ 8.6): the network is parsed from ``model.int8.trt.onnx``, whose
  Q/DQ nodes carry the scales; the INT8 flag is set and no calibrator is used;
* implicit (older JetPack): the network is parsed from ``model.onnx`` and an
  ``IInt8EntropyCalibrator2`` hands TensorRT ``calib.cache`` (header rewritten for this TensorRT)
  from ``read_calibration_cache``; ``get_batch`` returns ``None``: no images are needed on device.

FP16 and FP32 builds parse ``model.onnx``. Every engine has one optimisation profile for batch
1..max_batch, uses (and updates) a timing cache beside the engines, and a workspace pool limit.

Precision is decided by plain code (:func:`choose_precision`): a GPU without fast INT8 (Jetson
Nano, sm_53) gets FP16 with a loud warning. After the build the engine inspector counts INT8
layers; an "INT8" engine without any is recorded as what it really is. The sidecar's
``built_precision`` is what the runtime reports, never the requested precision.

TensorRT and pycuda are imported lazily; everything but :func:`build_engine` runs without them.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calibration import trt_cache
from edge import engine_cache
from edge.atomic import write_atomic
from edge.errors import CalibrationError, RuntimeUnavailable
from edge.manifest import load_manifest_for
from edge.runtimes.artifacts import CALIB_CACHE, FP32_ONNX, TRT_INT8_ONNX

logger = logging.getLogger(__name__)

EXPLICIT_MIN_VERSION = (8, 6)
DEFAULT_WORKSPACE_MB = 1024
INSTALL_HINT = "TensorRT comes with JetPack (or NVIDIA's tensorrt wheel); pycuda: pip install 'gemsight[jetson]'"


@dataclass(frozen=True)
class BuildPlan:
    """What a build parses and how it quantizes."""

    precision: str            # precision that will be built: int8 | fp16 | fp32
    mode: str                 # explicit | implicit | float
    onnx: Path
    calib_cache: Path | None
    warning: str | None = None


def version_tuple(version: str) -> tuple[int, int, int]:
    parts = (str(version).split(".") + ["0", "0"])[:3]
    try:
        return tuple(int(p) for p in parts)  # type: ignore[return-value]
    except ValueError as exc:
        raise CalibrationError(f"'{version}' is not a TensorRT version") from exc


def fast_precisions_from_cc(compute_capability: str) -> tuple[bool, bool]:
    """(fast INT8, fast FP16) for a compute capability, where TensorRT no longer says (≥ 10.5).

    INT8 needs DP4A (sm_61) or tensor cores (sm_70+): the Nano (5.3), TX2 (6.2) and P100 (6.0)
    have none. Fast FP16: 5.3, 6.0, 6.2 and everything from 7.0.
    """
    major, minor = (int(x) for x in compute_capability.split(".")[:2])
    cc = (major, minor)
    return cc == (6, 1) or cc >= (7, 0), cc in {(5, 3), (6, 0), (6, 2)} or cc >= (7, 0)


def choose_precision(requested: str, fast_int8: bool, fast_fp16: bool) -> tuple[str, str | None]:
    """The precision to build and, if it is not the requested one, the warning to log.

    Raises:
        CalibrationError: an unknown precision.
    """
    if requested not in engine_cache.PRECISIONS:
        raise CalibrationError(f"unknown precision '{requested}' (choose {', '.join(engine_cache.PRECISIONS)})")
    if requested == "int8" and not fast_int8:
        fallback = "fp16" if fast_fp16 else "fp32"
        return fallback, (f"this GPU has no fast INT8 (e.g. Jetson Nano): building {fallback.upper()} instead of "
                          f"INT8 — the engine is NOT INT8 and is recorded as {fallback}")
    if requested == "fp16" and not fast_fp16:
        return "fp32", "this GPU has no fast FP16: building FP32 instead"
    return requested, None


def plan_build(model_dir: str | Path, requested: str, trt_version: str, fast_int8: bool, fast_fp16: bool) -> BuildPlan:
    """Decide precision, quantization mode and source files for a model directory.

    Raises:
        CalibrationError: the files the chosen path needs are missing (the message lists them).
    """
    model_dir = Path(model_dir)
    precision, warning = choose_precision(requested, fast_int8, fast_fp16)
    fp32, cache, qdq = model_dir / FP32_ONNX, model_dir / CALIB_CACHE, model_dir / TRT_INT8_ONNX
    if precision != "int8":
        if not fp32.is_file():
            raise CalibrationError(f"{model_dir}: no {FP32_ONNX} to build a {precision} engine from")
        return BuildPlan(precision, "float", fp32, None, warning)
    if version_tuple(trt_version)[:2] >= EXPLICIT_MIN_VERSION and qdq.is_file():
        return BuildPlan("int8", "explicit", qdq, None, warning)
    if fp32.is_file() and cache.is_file():
        return BuildPlan("int8", "implicit", fp32, cache, warning)
    raise CalibrationError(
        f"{model_dir}: an INT8 engine needs {TRT_INT8_ONNX} (TensorRT ≥ 8.6, have {trt_version}) or "
        f"{FP32_ONNX} + {CALIB_CACHE}; run gemsight-calibrate with the tensorrt target")


def count_int8_layers(engine_info_json: str) -> tuple[int, int]:
    """(layers with an INT8 input or output, all layers) from the engine inspector's JSON."""
    try:
        info = json.loads(engine_info_json)
    except (TypeError, json.JSONDecodeError):
        return 0, 0
    layers = info.get("Layers", []) if isinstance(info, dict) else []
    int8 = 0
    for layer in layers:
        if not isinstance(layer, dict):  # names only: built without detailed profiling verbosity
            continue
        tensors = list(layer.get("Inputs", [])) + list(layer.get("Outputs", []))
        # "... Int8 format" (8.x) or "... INT8 ..." (later): compare case-blind
        if any("int8" in str(t.get("Format/Datatype", "")).lower() for t in tensors if isinstance(t, dict)):
            int8 += 1
    return int8, len(layers)


def import_tensorrt():
    """Import tensorrt, or explain where it comes from.

    Raises:
        RuntimeUnavailable: TensorRT is not installed.
    """
    try:
        import tensorrt as trt  # noqa: PLC0415
    except ImportError as exc:
        raise RuntimeUnavailable(f"TensorRT is not installed here ({exc.name}); {INSTALL_HINT}") from exc
    return trt


def _make_logger(trt):
    class _TrtLogger(trt.ILogger):
        """Route TensorRT's messages into logging (journald); never raises."""

        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity, msg):  # noqa: D401 - TensorRT callback
            try:
                name = getattr(severity, "name", str(severity)).rsplit(".", 1)[-1]
                level = {"INTERNAL_ERROR": logging.CRITICAL, "ERROR": logging.ERROR,
                         "WARNING": logging.WARNING}.get(name, logging.DEBUG)
                logger.log(level, "tensorrt: %s", msg)
            except Exception:  # a logging failure must never unwind through TensorRT
                pass
    return _TrtLogger()


def _make_cache_calibrator(trt, cache_bytes: bytes, batch_size: int):
    class _CacheCalibrator(trt.IInt8EntropyCalibrator2):
        """Hands TensorRT our calibration cache; never calibrates, never raises."""

        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)  # trampoline classes must init their base

        def get_batch_size(self):
            return batch_size

        def get_batch(self, names):
            # The cache has every scale; reaching here means TensorRT rejected it.
            logger.error("TensorRT asked for calibration data: it did not accept calib.cache (%s)", names)
            return None

        def read_calibration_cache(self):
            try:
                return cache_bytes
            except Exception as exc:  # pragma: no cover - defensive: callbacks never raise
                logger.error("cannot hand calibration cache to TensorRT: %s", exc)
                return None

        def write_calibration_cache(self, cache):
            return None  # ours is the source of truth; TensorRT's copy is not kept
    return _CacheCalibrator()


def build_engine(plan: BuildPlan, *, input_name: str, chw: tuple[int, int, int], max_batch: int,
                 timing_cache: Path | None, workspace_mb: int = DEFAULT_WORKSPACE_MB,
                 fast_fp16: bool = True) -> tuple[bytes, dict[str, Any]]:
    """Build and serialize an engine (needs TensorRT and a GPU).

    Returns:
        (engine bytes, facts for the sidecar: built_precision, mode, int8_layers, ...).

    Raises:
        CalibrationError: parsing or building failed (TensorRT's errors are in the message).
    """
    trt = import_tensorrt()
    trt_logger = _make_logger(trt)
    major = version_tuple(trt.__version__)[0]
    builder = trt.Builder(trt_logger)
    # TensorRT 10 networks are always explicit-batch (the flag is deprecated and ignored there).
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse_from_file(str(plan.onnx)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise CalibrationError(f"TensorRT cannot parse {plan.onnx}: {errors}")
    net_input = network.get_input(0)
    if net_input.name != input_name:
        raise CalibrationError(f"{plan.onnx}: TensorRT sees input '{net_input.name}', the manifest says '{input_name}'")
    config = builder.create_builder_config()
    workspace = int(workspace_mb) << 20
    if hasattr(config, "set_memory_pool_limit"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    else:  # TensorRT < 8.4
        config.max_workspace_size = workspace
    profile = builder.create_optimization_profile()
    if net_input.shape[0] == -1:
        profile.set_shape(input_name, (1, *chw), (max_batch, *chw), (max_batch, *chw))
    else:
        max_batch = int(net_input.shape[0])
        logger.warning("%s has a fixed batch of %d; the engine takes exactly that", plan.onnx, max_batch)
        profile.set_shape(input_name, (max_batch, *chw), (max_batch, *chw), (max_batch, *chw))
    config.add_optimization_profile(profile)
    if plan.precision == "fp16" or (plan.precision == "int8" and fast_fp16):
        config.set_flag(trt.BuilderFlag.FP16)  # INT8 builds may still run unquantized layers in FP16
    calibrator = None
    if plan.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        if plan.mode == "implicit":
            cache = trt_cache.cache_bytes_for(plan.calib_cache, trt.__version__)
            calibrator = _make_cache_calibrator(trt, cache, max_batch)
            config.int8_calibrator = calibrator
            if hasattr(config, "set_calibration_profile"):
                config.set_calibration_profile(profile)
    try:
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # so the inspector shows precisions
    except AttributeError:
        pass
    if timing_cache is not None and hasattr(config, "create_timing_cache"):
        blob = timing_cache.read_bytes() if timing_cache.is_file() else b""
        config.set_timing_cache(config.create_timing_cache(blob), ignore_mismatch=False)
    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise CalibrationError(f"TensorRT failed to build an engine from {plan.onnx} (see the tensorrt log lines)")
    engine_bytes = bytes(serialized)
    seconds = time.perf_counter() - started
    if timing_cache is not None and hasattr(config, "get_timing_cache"):
        write_atomic(timing_cache, bytes(config.get_timing_cache().serialize()))
    int8_layers, layers = _inspect(trt, trt_logger, engine_bytes)
    built = plan.precision
    if built == "int8" and layers and int8_layers == 0:
        built = "fp16" if fast_fp16 else "fp32"
        logger.warning("WARNING: TensorRT built no INT8 layer from %s; recording the engine as %s, not int8",
                       plan.onnx, built)
    return engine_bytes, {"built_precision": built, "mode": plan.mode, "source": plan.onnx.name,
                          "int8_layers": int8_layers, "layers": layers, "build_seconds": round(seconds, 1),
                          "workspace_mb": int(workspace_mb), "max_batch_built": max_batch,
                          "warning": plan.warning}


def _inspect(trt, trt_logger, engine_bytes: bytes) -> tuple[int, int]:
    try:
        engine = trt.Runtime(trt_logger).deserialize_cuda_engine(engine_bytes)
        inspector = engine.create_engine_inspector()
        return count_int8_layers(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
    except Exception as exc:  # inspector missing (< 8.2) or refused: we just cannot count
        logger.info("cannot inspect the engine's layer precisions: %s", exc)
        return 0, 0


def _fast_flags(trt, builder, compute_capability: str) -> tuple[bool, bool]:
    # platform_has_fast_* are deprecated from TensorRT 10.5; the compute capability decides there.
    by_cc = fast_precisions_from_cc(compute_capability)
    int8 = getattr(builder, "platform_has_fast_int8", None)
    fp16 = getattr(builder, "platform_has_fast_fp16", None)
    return (by_cc[0] if int8 is None else bool(int8)), (by_cc[1] if fp16 is None else bool(fp16))


def ensure_engine(model_dir: Path, cache_dir: Path, max_batch: int, precision: str = "int8", *,
                  device_index: int = 0, workspace_mb: int = DEFAULT_WORKSPACE_MB, rebuild: bool = False) -> Path:
    """The engine for a model directory on this device: from the cache, or built and cached now.

    Args:
        model_dir: a calibration output / installed bundle directory.
        cache_dir: the engine cache (see :mod:`edge.engine_cache`).
        max_batch: the profile's largest batch (the number of slots); the runtime must be opened
            with the same ``max_batch`` to find the engine.
        precision: requested precision; the engine may be built lower (see the sidecar).
        device_index: CUDA device.
        workspace_mb: builder workspace pool limit.
        rebuild: build even when a cached engine exists.

    Returns:
        Path of ``engine.plan`` (its sidecar ``engine.json`` beside it).

    Raises:
        RuntimeUnavailable: TensorRT/pycuda/GPU missing.
        CalibrationError: missing artifacts, or the build failed.
    """
    model_dir, cache_dir = Path(model_dir), Path(cache_dir)
    trt = import_tensorrt()
    key = engine_cache.key_for(model_dir, precision, max_batch, device_index)
    if not rebuild:
        hit = engine_cache.lookup(cache_dir, key)
        if hit is not None:
            logger.info("engine cache hit: %s (%s)", hit.path, hit.built_precision)
            return hit.path
    manifest = load_manifest_for(model_dir)
    builder = trt.Builder(_make_logger(trt))
    fast_int8, fast_fp16 = _fast_flags(trt, builder, key.compute_capability)
    del builder
    plan = plan_build(model_dir, precision, key.trt_version, fast_int8, fast_fp16)
    if plan.warning:
        logger.warning("WARNING: %s (%s, sm_%s)", plan.warning, key.gpu_name, key.compute_capability)
    cache_dir.mkdir(parents=True, exist_ok=True)
    timing = cache_dir / f"timing-trt{key.trt_version}-sm{key.compute_capability}.cache"
    logger.info("building TensorRT %s engine (%s) from %s, batch 1..%d", plan.precision, plan.mode, plan.onnx, max_batch)
    h, w = manifest.input.size
    engine_bytes, facts = build_engine(plan, input_name=manifest.input.name, chw=(3, h, w), max_batch=max_batch,
                                       timing_cache=timing, workspace_mb=workspace_mb, fast_fp16=fast_fp16)
    facts.update({"fast_int8": fast_int8, "fast_fp16": fast_fp16, "model_dir": str(model_dir)})
    built = facts.pop("built_precision")
    return engine_cache.store(cache_dir, key, engine_bytes, built, facts).path
