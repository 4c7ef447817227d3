"""TensorRT engine builder (runs on the device that will run the engine), for TensorRT 8.6, 10.x and 11.x.

One code path; what the imported TensorRT offers (:class:`calibration.trt_api.TrtApi`) picks the
way an INT8 engine is made from the calibration outputs:

* ``strongly-typed`` (TensorRT ≥ 10, the documented way for Q/DQ models, the only one in 11): the
  network is parsed from ``model.int8.trt.onnx`` into a strongly typed network and no precision
  flag is set: the Q/DQ nodes say what runs in INT8;
* ``explicit`` (TensorRT 8.x): the same Q/DQ model with ``BuilderFlag.INT8`` (and ``FP16`` for
  the layers left unquantized, when ``fp16_fallback`` allows);
* ``implicit`` (only where the API still has a calibrator: 8.x and 10.x, deprecated since 10.1):
  ``model.onnx`` with ``IInt8EntropyCalibrator2`` handing TensorRT ``calib.cache`` (header rewritten
  for this TensorRT); ``get_batch`` returns ``None``: no images are needed on the device.

FP16 and FP32 builds parse ``model.onnx``; TensorRT 11 has no FP16 flag, so FP16 there would need a
model converted to FP16 offline: gemsight builds FP32 and says so. Every engine has one
optimisation profile for batch 1..max_batch, the configured workspace pool limit, a timing cache
beside the engines, and (with ``dla_core``) runs on that DLA core with GPU fallback.

Precision is decided by plain code (:func:`choose_precision`) from the compute capability (the
``platform_has_fast_*`` queries are deprecated from 10.5 and gone in 11): a GPU without fast INT8
gets FP16 (or FP32) with a loud warning. After the build the engine inspector, given a context
with the profile's largest shape, counts INT8 layers (:mod:`calibration.trt_inspect`); an "INT8"
engine with none is recorded as what it really is. Every TensorRT failure is a
:class:`CalibrationError` naming the step.

TensorRT is imported lazily; everything but :func:`build_engine`/:func:`ensure_engine` runs without it.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calibration import trt_cache
from calibration.trt_api import TrtApi, trt_step
from calibration.trt_callbacks import make_cache_calibrator as _make_cache_calibrator
from calibration.trt_callbacks import make_logger as _make_logger
from calibration.trt_inspect import count_int8_layers, inspect_engine  # noqa: F401 - count_int8_layers re-exported
from edge.atomic import write_atomic
from edge.errors import CalibrationError, RuntimeUnavailable
from edge.manifest import load_manifest_for
from edge.runtimes import engine_cache
from edge.runtimes.artifacts import CALIB_CACHE, FP32_ONNX, TRT_INT8_ONNX
from edge.runtimes.engine_cache import BuildOptions

logger = logging.getLogger(__name__)

INSTALL_HINT = "TensorRT comes with JetPack (or NVIDIA's tensorrt wheel); pycuda: pip install 'gemsight[jetson]'"


@dataclass(frozen=True)
class BuildPlan:
    """What a build parses and how it quantizes."""

    precision: str            # precision that will be built: int8 | fp16 | fp32
    mode: str                 # strongly-typed | explicit | implicit | float
    onnx: Path
    calib_cache: Path | None
    warning: str | None = None

    @property
    def strongly_typed(self) -> bool:
        return self.mode == "strongly-typed"


def version_tuple(version: str) -> tuple[int, int, int]:
    parts = (str(version).split(".") + ["0", "0"])[:3]
    try:
        return tuple(int(p) for p in parts)  # type: ignore[return-value]
    except ValueError as exc:
        raise CalibrationError(f"'{version}' is not a TensorRT version") from exc


def fast_precisions_from_cc(compute_capability: str) -> tuple[bool, bool]:
    """(fast INT8, fast FP16) for a compute capability (NVIDIA: "query data type support from CUDA").

    INT8 needs DP4A (sm_61) or tensor cores (sm_70+): the Nano (5.3), TX2 (6.2) and P100 (6.0)
    have none. Fast FP16: 5.3, 6.0, 6.2 and everything from 7.0.
    """
    try:
        major, minor = (int(x) for x in str(compute_capability).split(".")[:2])
    except ValueError as exc:
        raise CalibrationError(f"'{compute_capability}' is not a CUDA compute capability (expected e.g. 8.7)") from exc
    cc = (major, minor)
    return cc == (6, 1) or cc >= (7, 0), cc in {(5, 3), (6, 0), (6, 2)} or cc >= (7, 0)


def choose_precision(requested: str, fast_int8: bool, fast_fp16: bool, api: TrtApi | None = None,
                     fp16_fallback: bool = True) -> tuple[str, str | None]:
    """The precision to build and, if it is not the requested one, the warning to log.

    Args:
        requested: int8 | fp16 | fp32.
        fast_int8, fast_fp16: what the GPU has (:func:`fast_precisions_from_cc`).
        api: the TensorRT's capabilities (``None``: one with an FP16 flag).
        fp16_fallback: a GPU without fast INT8 gets FP16 (else FP32).

    Raises:
        CalibrationError: an unknown precision.
    """
    if requested not in engine_cache.PRECISIONS:
        raise CalibrationError(f"unknown precision '{requested}' (choose {', '.join(engine_cache.PRECISIONS)})")
    fp16_buildable = fast_fp16 and (api is None or api.fp16_flag)
    if requested == "int8" and not fast_int8:
        fallback = "fp16" if fp16_fallback and fp16_buildable else "fp32"
        return fallback, (f"this GPU has no fast INT8 (e.g. Jetson Nano): building {fallback.upper()} instead of "
                          f"INT8 — the engine is NOT INT8 and is recorded as {fallback}")
    if requested == "fp16" and not fast_fp16:
        return "fp32", "this GPU has no fast FP16: building FP32 instead"
    if requested == "fp16" and not fp16_buildable:
        return "fp32", (f"TensorRT {api.version if api else ''} has no FP16 builder flag (strongly typed only): "
                        "building FP32 from model.onnx; an FP16 engine needs a model converted to FP16 offline")
    return requested, None


def plan_build(model_dir: str | Path, requested: str, api: TrtApi, fast_int8: bool, fast_fp16: bool,
               fp16_fallback: bool = True) -> BuildPlan:
    """Decide precision, quantization mode and source files for a model directory.

    Raises:
        CalibrationError: the files the chosen path needs are missing, or this TensorRT offers no
            way to build INT8 from the files there (the message lists both).
    """
    model_dir = Path(model_dir)
    precision, warning = choose_precision(requested, fast_int8, fast_fp16, api, fp16_fallback)
    fp32, cache, qdq = model_dir / FP32_ONNX, model_dir / CALIB_CACHE, model_dir / TRT_INT8_ONNX
    if precision != "int8":
        if not fp32.is_file():
            raise CalibrationError(f"{model_dir}: no {FP32_ONNX} to build a {precision} engine from")
        return BuildPlan(precision, "float", fp32, None, warning)
    if qdq.is_file() and api.strongly_typed:
        return BuildPlan("int8", "strongly-typed", qdq, None, warning)
    if qdq.is_file() and api.int8_flag:
        return BuildPlan("int8", "explicit", qdq, None, warning)
    if fp32.is_file() and cache.is_file() and api.calibrator:
        return BuildPlan("int8", "implicit", fp32, cache, warning)
    how = (f"{TRT_INT8_ONNX}" if not api.calibrator else f"{TRT_INT8_ONNX} or {FP32_ONNX} + {CALIB_CACHE}")
    raise CalibrationError(
        f"{model_dir}: an INT8 engine on TensorRT {api.version} needs {how}; run gemsight-calibrate with the "
        f"tensorrt target" + ("" if api.calibrator else " (this TensorRT has no calibration-cache path)"))


def import_tensorrt():
    """Import tensorrt, or explain where it comes from.

    Raises:
        RuntimeUnavailable: TensorRT is not installed.
    """
    try:
        import tensorrt as trt  # noqa: PLC0415
    except ImportError as exc:
        raise RuntimeUnavailable(f"TensorRT is not installed here ({exc.name}); {INSTALL_HINT}") from exc
    except Exception as exc:  # a broken install (libnvinfer missing or mismatched) raises more than ImportError
        raise RuntimeUnavailable(f"TensorRT is installed but does not load ({type(exc).__name__}: {exc}); "
                                 f"{INSTALL_HINT}") from exc
    return trt


def _configure(trt, api: TrtApi, builder, network, plan: BuildPlan, *, input_name: str,
               chw: tuple[int, int, int], max_batch: int, options: BuildOptions) -> tuple[Any, Any, int]:
    """The builder config for ``plan``: profile, workspace, precision flags, calibrator, DLA."""
    with trt_step(f"setting the workspace to {options.workspace_mb} MiB"):
        config = builder.create_builder_config()
        workspace = int(options.workspace_mb) << 20
        if api.memory_pool:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
        else:  # TensorRT < 8.4
            config.max_workspace_size = workspace
    with trt_step("creating the optimisation profile"):
        profile = builder.create_optimization_profile()
        net_input = network.get_input(0)
        if int(net_input.shape[0]) != -1:
            max_batch = int(net_input.shape[0])
            logger.warning("%s has a fixed batch of %d; the engine takes exactly that", plan.onnx, max_batch)
        low = 1 if int(net_input.shape[0]) == -1 else max_batch
        profile.set_shape(input_name, (low, *chw), (max_batch, *chw), (max_batch, *chw))
        config.add_optimization_profile(profile)
    calibrator = None
    with trt_step(f"setting up a {plan.mode} {plan.precision} build"):
        if not plan.strongly_typed:
            if plan.precision == "fp16" or (plan.precision == "int8" and options.fp16_fallback and api.fp16_flag):
                config.set_flag(trt.BuilderFlag.FP16)  # weakly typed: unquantized layers may run in FP16
            if plan.precision == "int8":
                config.set_flag(trt.BuilderFlag.INT8)
            if plan.mode == "implicit":
                calibrator = _make_cache_calibrator(trt, trt_cache.cache_bytes_for(plan.calib_cache, api.version),
                                                    max_batch)
                config.int8_calibrator = calibrator
                if api.calibration_profile:
                    config.set_calibration_profile(profile)
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # so the inspector shows precisions
    if options.dla_core is not None:
        if not api.dla:
            raise CalibrationError(f"dla_core {options.dla_core} is set but TensorRT {api.version} here has no DLA "
                                   "support; remove dla_core from the tensorrt options")
        with trt_step(f"selecting DLA core {options.dla_core}"):
            config.default_device_type = trt.DeviceType.DLA
            config.DLA_core = int(options.dla_core)
            if api.gpu_fallback:
                config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    return config, calibrator, max_batch


def build_engine(plan: BuildPlan, *, input_name: str, chw: tuple[int, int, int], max_batch: int,
                 timing_cache: Path | None, options: BuildOptions | None = None) -> tuple[bytes, dict[str, Any]]:
    """Build and serialize an engine (needs TensorRT and a GPU).

    Returns:
        (engine bytes, facts for the sidecar: built_precision, mode, int8_layers, ...).

    Raises:
        CalibrationError: parsing or building failed (the step and TensorRT's words in the message).
    """
    options = options or BuildOptions()
    trt = import_tensorrt()
    api = TrtApi.of(trt)
    with trt_step("creating the builder and network"):
        trt_logger = _make_logger(trt)
        builder = trt.Builder(trt_logger)
        # FP32 is strongly typed too where TensorRT has it: same engine, and weak typing is deprecated (10.12).
        network = builder.create_network(api.network_flags(trt, plan.strongly_typed or plan.precision == "fp32"))
        parser = trt.OnnxParser(network, trt_logger)
    with trt_step(f"parsing {plan.onnx}"):
        ok = parser.parse_from_file(str(plan.onnx))
        errors = "" if ok else "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
    if not ok:
        raise CalibrationError(f"TensorRT cannot parse {plan.onnx}: {errors or 'no reason given'}")
    with trt_step(f"reading the inputs of {plan.onnx}"):
        net_input = network.get_input(0)
    if net_input.name != input_name:
        raise CalibrationError(f"{plan.onnx}: TensorRT sees input '{net_input.name}', the manifest says '{input_name}'")
    config, _calibrator, max_batch = _configure(trt, api, builder, network, plan, input_name=input_name, chw=chw,
                                                max_batch=max_batch, options=options)
    if timing_cache is not None and hasattr(config, "create_timing_cache"):
        with trt_step(f"loading the timing cache {timing_cache}"):
            blob = timing_cache.read_bytes() if timing_cache.is_file() else b""
            config.set_timing_cache(config.create_timing_cache(blob), ignore_mismatch=False)
    started = time.perf_counter()
    with trt_step(f"building the engine from {plan.onnx}"):
        serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise CalibrationError(f"TensorRT failed to build an engine from {plan.onnx} (see the tensorrt log lines)")
    engine_bytes = bytes(serialized)
    seconds = time.perf_counter() - started
    if timing_cache is not None and hasattr(config, "get_timing_cache"):
        with trt_step(f"saving the timing cache {timing_cache}"):
            write_atomic(timing_cache, bytes(config.get_timing_cache().serialize()))
    with trt_step("deserializing the new engine"):
        engine = deserialize(trt, trt_logger, engine_bytes, options.dla_core)
    if engine is None:
        raise CalibrationError(f"TensorRT built an engine from {plan.onnx} that it cannot deserialize")
    count = inspect_engine(trt, api, engine, input_name, (max_batch, *chw))
    built = plan.precision
    if built == "int8" and count.int8 == 0 and count.conclusive:
        built = "fp16" if options.fp16_fallback and api.fp16_flag and not plan.strongly_typed else "fp32"
        logger.warning("WARNING: TensorRT built no INT8 layer from %s (%d layers inspected); recording the engine "
                       "as %s, not int8", plan.onnx, count.layers, built)
    elif built == "int8" and not count.conclusive:
        logger.warning("WARNING: the engine inspector could not show layer formats for %s; the engine is recorded "
                       "as int8 (as built), unconfirmed", plan.onnx)
    return engine_bytes, {"built_precision": built, "mode": plan.mode, "source": plan.onnx.name,
                          "int8_layers": count.int8, "layers": count.layers, "int8_confirmed": count.int8 > 0,
                          "build_seconds": round(seconds, 1), "max_batch_built": max_batch,
                          "tensorrt": api.version, "warning": plan.warning}


def deserialize(trt, trt_logger, engine_bytes: bytes, dla_core: int | None = None):
    """An engine from bytes (on ``dla_core`` when set), or ``None`` when TensorRT refuses it."""
    runtime = trt.Runtime(trt_logger)
    if dla_core is not None:
        runtime.DLA_core = int(dla_core)
    return runtime.deserialize_cuda_engine(engine_bytes)


def verify_engine(trt, path: Path, dla_core: int | None = None) -> str | None:
    """Deserialize a cached engine once: ``None`` when it loads, else why not (stale or damaged)."""
    try:
        engine = deserialize(trt, _make_logger(trt), Path(path).read_bytes(), dla_core)
    except Exception as exc:  # unreadable file, or TensorRT raised instead of returning None
        return f"{type(exc).__name__}: {exc}"
    return None if engine is not None else "TensorRT cannot deserialize it (built by another TensorRT, driver or GPU?)"


def ensure_engine(model_dir: Path, cache_dir: Path, max_batch: int, precision: str = "int8", *,
                  device_index: int = 0, options: BuildOptions | None = None, rebuild: bool = False) -> Path:
    """The engine for a model directory on this device: from the cache (deserialized once to prove
    it still loads), or built and cached now.

    A cached engine that does not deserialize (a TensorRT, driver or JetPack update the key did not
    see, a damaged file) is logged as an error and rebuilt; so is an entry whose files are damaged.

    Args:
        model_dir: a calibration output / installed bundle directory.
        cache_dir: the engine cache (see :mod:`edge.runtimes.engine_cache`).
        max_batch: the profile's largest batch (:func:`edge.config.device.engine_max_batch`); the runtime
            must be opened with the same ``max_batch`` to find the engine.
        precision: requested precision; the engine may be built lower (see the sidecar).
        device_index: CUDA device.
        options: builder options (workspace, FP16 fallback, DLA core), part of the cache key.
        rebuild: build even when a cached engine loads.

    Returns:
        Path of ``engine.plan`` (its sidecar ``engine.json`` beside it).

    Raises:
        RuntimeUnavailable: TensorRT/pycuda/GPU missing.
        CalibrationError: missing artifacts, or the build failed.
    """
    model_dir, cache_dir = Path(model_dir), Path(cache_dir)
    options = options or BuildOptions()
    trt = import_tensorrt()
    api = TrtApi.of(trt)
    key = engine_cache.key_for(model_dir, precision, max_batch, device_index, options)
    if rebuild:
        logger.warning("rebuilding the TensorRT engine for %s as asked (--rebuild)", model_dir)
    else:
        hit = engine_cache.lookup(cache_dir, key)
        if hit is not None:
            problem = verify_engine(trt, hit.path, options.dla_core)
            if problem is None:
                logger.info("engine cache hit: %s (%s), deserializes on TensorRT %s", hit.path, hit.built_precision,
                            key.trt_version)
                return hit.path
            logger.error("STALE ENGINE %s: %s; discarding it and building a new one", hit.path, problem)
            engine_cache.discard(cache_dir, key)
        elif engine_cache.entry_dir(cache_dir, key).exists():
            logger.error("DAMAGED ENGINE CACHE ENTRY %s (unreadable or incomplete); building a new one",
                         engine_cache.entry_dir(cache_dir, key))
        for old in engine_cache.older_entries(cache_dir, key):
            other = old.sidecar.get("key") or {}
            logger.warning("engine %s was built for TensorRT %s / CUDA %s / %s (options %s); this device now has "
                           "TensorRT %s / CUDA %s / %s: building a new engine", old.path, other.get("trt_version"),
                           other.get("cuda_driver"), other.get("system"), old.sidecar.get("options"),
                           key.trt_version, key.cuda_driver, key.system)
    manifest = load_manifest_for(model_dir)
    fast_int8, fast_fp16 = fast_precisions_from_cc(key.compute_capability)
    plan = plan_build(model_dir, precision, api, fast_int8, fast_fp16, options.fp16_fallback)
    if plan.warning:
        logger.warning("WARNING: %s (%s, sm_%s)", plan.warning, key.gpu_name, key.compute_capability)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CalibrationError(f"cannot create the engine cache {cache_dir}: {exc}") from exc
    timing = cache_dir / f"timing-trt{key.trt_version}-sm{key.compute_capability}.cache"
    logger.info("building TensorRT %s %s engine (%s) from %s, batch 1..%d, workspace %d MiB%s", key.trt_version,
                plan.precision, plan.mode, plan.onnx, max_batch, options.workspace_mb,
                "" if options.dla_core is None else f", DLA core {options.dla_core}")
    h, w = manifest.input.size
    engine_bytes, facts = build_engine(plan, input_name=manifest.input.name, chw=(3, h, w), max_batch=max_batch,
                                       timing_cache=timing, options=options)
    facts.update({"fast_int8": fast_int8, "fast_fp16": fast_fp16, "model_dir": str(model_dir),
                  "options": {"workspace_mb": options.workspace_mb, "fp16_fallback": options.fp16_fallback,
                              "dla_core": options.dla_core}})
    built = facts.pop("built_precision")
    try:
        return engine_cache.store(cache_dir, key, engine_bytes, built, facts).path
    except OSError as exc:  # full disk, or a cache directory this process may not write
        raise CalibrationError(f"cannot write the engine to {engine_cache.entry_dir(cache_dir, key)}: {exc}") from exc
