"""TensorRT backend (Jetson, NVIDIA GPUs): runs a prebuilt engine with pycuda buffers.

The runtime never builds: engines are built on the device by ``gemsight-deploy build-engine``
(which calls :func:`calibration.tensorrt.ensure_engine`) when a bundle is flashed. ``edge``
imports nothing of ours, and a camera loop should not stall for minutes in a surprise build.
Given a model directory (or a file in it) the engine is looked up in the engine cache under
this device's key (:mod:`edge.engine_cache`); given an ``.engine``/``.plan`` file it is loaded as
is. No engine → :class:`RuntimeUnavailable` telling what to run.

Buffers: page-locked host memory and device memory for ``max_batch`` images, one pair per I/O tensor
of the engine (the input, the class scores, the embedding where the manifest names one, and any other
output: TensorRT needs an address for each), one CUDA stream, the device's primary CUDA context pushed
around every call (so any thread may infer). Both API generations are read by
:mod:`edge.runtimes.tensorrt_io`: named tensors (TensorRT ≥ 8.5, ``execute_async_v3``) and bindings
(8.2/8.4, ``execute_async_v2``).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from edge import engine_cache
from edge.contracts import DEFAULT_MAX_BATCH
from edge.errors import InferenceError, RuntimeUnavailable
from edge.runtimes.base import Runtime, register_runtime
from edge.runtimes.tensorrt_io import buffer_shape, check_engine_io, read_engine_io

logger = logging.getLogger(__name__)

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


def locate_engine(model_path: str | Path, precision: str, max_batch: int, cache_dir: str | Path | None = None,
                  key: engine_cache.EngineKey | None = None, device_index: int = 0,
                  options: engine_cache.BuildOptions | None = None) -> engine_cache.CachedEngine:
    """The engine to load for ``model_path``.

    Args:
        model_path: an engine file, or a model directory / a file inside one.
        precision: the requested precision (part of the cache key).
        max_batch: the profile's largest batch (part of the cache key).
        cache_dir: engine cache (default :func:`edge.engine_cache.default_cache_dir`).
        key: the cache key; computed for this device when ``None`` (needs TensorRT and pycuda).
        device_index: CUDA device.
        options: the builder options the engine was built with (part of the cache key).

    Raises:
        RuntimeUnavailable: no engine; the message says how to build one.
    """
    path = Path(model_path)
    if path.suffix in ENGINE_SUFFIXES:
        if not path.is_file():
            raise RuntimeUnavailable(f"tensorrt: engine file {path} not found")
        return engine_cache.CachedEngine(path, engine_cache.read_sidecar(path))
    model_dir = path if path.is_dir() else path.parent
    cache_dir = Path(cache_dir) if cache_dir else engine_cache.default_cache_dir()
    key = key or engine_cache.key_for(model_dir, precision, max_batch, device_index, options)
    hit = engine_cache.lookup(cache_dir, key)
    if hit is None:
        raise RuntimeUnavailable(
            f"tensorrt: no engine for {model_dir} ({precision}, max batch {max_batch}, TensorRT {key.trt_version}, "
            f"{key.system}, {key.gpu_name}, {key.device_part}) in {cache_dir} (expected {key.dirname}/); build it on "
            f"this device with `gemsight-deploy build-engine {model_dir}`")
    return hit


@register_runtime("tensorrt")
class TensorRtRuntime(Runtime):
    """Options: ``engine_cache`` (directory), ``max_batch`` (must match the build; the edge passes
    :func:`edge.config.engine_max_batch`, else :data:`edge.contracts.DEFAULT_MAX_BATCH`), ``device``
    (CUDA device index, default 0), and the builder options the engine was built with
    (``workspace_mb``, ``fp16_fallback``, ``dla_core``: part of its cache key)."""

    @classmethod
    def unavailable_reason(cls) -> str | None:
        try:
            import tensorrt  # noqa: F401,PLC0415
            import pycuda.driver as cuda  # noqa: PLC0415
        except ImportError as exc:
            return f"TensorRT/pycuda not installed ({exc.name}); they come with JetPack ('gemsight[jetson]')"
        try:
            cuda.init()
            if cuda.Device.count() < 1:
                return "no CUDA device"
        except Exception as exc:  # driver missing or broken
            return f"CUDA unavailable: {exc}"
        return None

    def __init__(self, model_path, manifest, **options: Any) -> None:
        super().__init__(model_path, manifest, **options)
        import pycuda.driver as cuda  # noqa: PLC0415
        import tensorrt as trt  # noqa: PLC0415

        self._cuda = cuda
        requested = self.precision if self.precision in engine_cache.PRECISIONS else "fp32"
        device = int(options.get("device", 0))
        build = engine_cache.BuildOptions.from_options(options)
        self._dla_core = build.dla_core
        cached = locate_engine(self.model_path, requested, int(options.get("max_batch") or DEFAULT_MAX_BATCH),
                               options.get("engine_cache"), device_index=device, options=build)
        built = cached.built_precision or requested
        if built != requested:
            logger.warning("tensorrt: engine %s was built %s (%s asked): reporting %s", cached.path, built,
                           requested, built)
        self.precision = built
        self.manifest = self.manifest.updated(precision=built)
        self.engine_path = cached.path
        cuda.init()
        self._ctx = cuda.Device(device).retain_primary_context()
        self._ctx.push()
        try:
            self._setup(trt, cached.path)
        except Exception:
            self._release()
            self._ctx.pop()
            self._ctx.detach()
            self._ctx = None
            raise
        self._ctx.pop()
        logger.info("tensorrt: loaded %s (%s, batch %d..%d)", cached.path, built, self._min_batch, self._max_batch)

    def _setup(self, trt, engine_path: Path) -> None:
        cuda = self._cuda
        self._trt_logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._trt_logger)
        if getattr(self, "_dla_core", None) is not None:
            self._runtime.DLA_core = int(self._dla_core)
        self._engine = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self._engine is None:
            raise InferenceError(f"tensorrt: cannot deserialize {engine_path} (built by another TensorRT, driver or "
                                 "GPU?); rebuild it with `gemsight-deploy build-engine --rebuild`")
        io = read_engine_io(self._engine, trt, self.input_name, engine_path)
        check_engine_io(io, self.manifest, engine_path)
        self._io = io
        self._max_batch, self._min_batch = io.max_batch, max(1, io.min_batch)
        self._context = self._engine.create_execution_context()
        # One page-locked host buffer and one device buffer per I/O tensor, sized for the largest batch:
        # the input, the outputs the manifest names (class scores, the embedding) and any other output
        # of the engine (it needs an address too; never copied back).
        self._host = {t.name: cuda.pagelocked_empty(io.input_max if t.is_input else buffer_shape(t, self._max_batch),
                                                    t.dtype) for t in io.tensors}
        self._dev = {name: cuda.mem_alloc(host.nbytes) for name, host in self._host.items()}
        self._stream = cuda.Stream()
        if io.tensor_api:
            for name, dev in self._dev.items():
                if self._context.set_tensor_address(name, int(dev)) is False:
                    raise InferenceError(f"tensorrt: {engine_path}: cannot bind tensor '{name}'")
        else:  # every binding needs an address, in binding order
            self._bindings = [int(self._dev[n]) for n in io.names]
        unused = [n for n in io.names if n != self.input_name and n not in self.output_names]
        if unused:
            logger.info("tensorrt: %s also gives %s (not in the manifest): computed, not returned", engine_path,
                        ", ".join(unused))

    @property
    def max_batch(self) -> int | None:
        return self._max_batch

    def _infer(self, batch: np.ndarray) -> list[np.ndarray]:
        cuda, n = self._cuda, batch.shape[0]
        # An engine whose profile starts above 1 image runs zero rows beside the batch (not returned).
        rows = max(n, self._min_batch)
        self._ctx.push()
        try:
            host_in = self._host[self.input_name][:rows]
            host_in[:n] = batch  # into page-locked memory: the async copy needs it
            host_in[n:] = 0
            shape = (rows, *batch.shape[1:])
            if self._io.tensor_api:
                ok = self._context.set_input_shape(self.input_name, shape)
            else:
                ok = self._context.set_binding_shape(self._io.names.index(self.input_name), shape)
            if ok is False:
                raise InferenceError(f"tensorrt: input '{self.input_name}' of shape {shape} is outside the engine's "
                                     f"profile ({self._io.input_min} .. {self._io.input_max})")
            cuda.memcpy_htod_async(self._dev[self.input_name], host_in, self._stream)
            if self._io.tensor_api:
                ok = self._context.execute_async_v3(self._stream.handle)
            else:
                ok = self._context.execute_async_v2(self._bindings, self._stream.handle)
            if not ok:
                raise InferenceError(f"tensorrt: execution failed for a batch of {n}")
            outs = [self._host[name][:rows] for name in self.output_names]
            for name, host in zip(self.output_names, outs):
                cuda.memcpy_dtoh_async(host, self._dev[name], self._stream)
            self._stream.synchronize()
            return [host[:n].astype(np.float32, copy=True) for host in outs]
        except cuda.Error as exc:
            raise InferenceError(f"tensorrt: CUDA error: {exc}") from exc
        finally:
            self._ctx.pop()

    def _release(self) -> None:
        for dev in (getattr(self, "_dev", None) or {}).values():
            dev.free()
        self._dev = {}
        for name in ("_context", "_engine", "_runtime", "_stream", "_host"):
            setattr(self, name, None)

    def close(self) -> None:
        ctx = getattr(self, "_ctx", None)
        if ctx is None:
            return
        ctx.push()
        try:
            self._release()
        finally:
            ctx.pop()
            ctx.detach()
            self._ctx = None

    def describe(self) -> dict[str, str]:
        return {**super().describe(), "engine": str(self.engine_path)}
