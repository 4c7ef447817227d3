"""TensorRT backend (Jetson, NVIDIA GPUs): runs a prebuilt engine with pycuda buffers.

The runtime never builds: engines are built on the device by ``gemsight-deploy build-engine``
(which calls :func:`calibration.tensorrt.ensure_engine`) when a bundle is flashed. ``edge``
imports nothing of ours, and a camera loop should not stall for minutes in a surprise build.
Given a model directory (or a file in it) the engine is looked up in the engine cache under
this device's key (:mod:`edge.runtimes.engine_cache`); given an ``.engine``/``.plan`` file it is loaded as
is. No engine → :class:`RuntimeUnavailable` telling what to run.

Buffers: page-locked host memory and device memory for ``max_batch`` images, one CUDA stream,
the device's primary CUDA context pushed around every call (so any thread may infer).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from edge.contracts import DEFAULT_MAX_BATCH
from edge.errors import InferenceError, RuntimeUnavailable
from edge.runtimes import engine_cache
from edge.runtimes.base import Runtime, register_runtime

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
        cache_dir: engine cache (default :func:`edge.runtimes.engine_cache.default_cache_dir`).
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
    :func:`edge.config.device.engine_max_batch`, else :data:`edge.contracts.DEFAULT_MAX_BATCH`), ``device``
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
        logger.info("tensorrt: loaded %s (%s, batch 1..%d)", cached.path, built, self._max_batch)

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
        self._context = self._engine.create_execution_context()
        self._tensor_api = hasattr(self._engine, "num_io_tensors")  # TensorRT ≥ 8.5
        if self._tensor_api:
            names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
            inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
            dtype_of = self._engine.get_tensor_dtype
            max_shape = tuple(self._engine.get_tensor_profile_shape(self.input_name, 0)[2]) \
                if self.input_name in inputs else None
        else:  # TensorRT 8.2/8.4 (older JetPack): bindings
            names = [self._engine.get_binding_name(i) for i in range(self._engine.num_bindings)]
            inputs = [n for i, n in enumerate(names) if self._engine.binding_is_input(i)]
            dtype_of = lambda n: self._engine.get_binding_dtype(names.index(n))  # noqa: E731
            max_shape = tuple(self._engine.get_profile_shape(0, self.input_name)[2]) \
                if self.input_name in inputs else None
        if inputs != [self.input_name] or any(n not in names for n in self.output_names):
            raise InferenceError(f"tensorrt: {engine_path} has tensors {names}, manifest says input "
                                 f"'{self.input_name}', outputs {', '.join(repr(n) for n in self.output_names)}")
        h, w = self.manifest.input.size
        if max_shape[1:] != (3, h, w):
            raise InferenceError(f"tensorrt: {engine_path} takes {max_shape}, manifest says N x 3 x {h} x {w}")
        self._max_batch = int(max_shape[0])
        self._names = names
        self._host_in = cuda.pagelocked_empty((self._max_batch, 3, h, w),
                                              np.dtype(trt.nptype(dtype_of(self.input_name))))
        # One page-locked host buffer and one device buffer per output: class scores, then the embedding.
        widths = [self.manifest.num_classes] + ([self.manifest.embedding.dim] if self.manifest.embedding else [])
        self._host_outs = [cuda.pagelocked_empty((self._max_batch, width), np.dtype(trt.nptype(dtype_of(name))))
                           for name, width in zip(self.output_names, widths)]
        self._d_in = cuda.mem_alloc(self._host_in.nbytes)
        self._d_outs = [cuda.mem_alloc(host.nbytes) for host in self._host_outs]
        self._stream = cuda.Stream()
        address = {self.input_name: int(self._d_in), **{n: int(d) for n, d in zip(self.output_names, self._d_outs)}}
        if self._tensor_api:
            for name, ptr in address.items():
                self._context.set_tensor_address(name, ptr)
        else:  # every binding needs an address, in binding order
            self._bindings = [address.get(n, 0) for n in names]

    @property
    def max_batch(self) -> int | None:
        return self._max_batch

    def _infer(self, batch: np.ndarray) -> list[np.ndarray]:
        cuda, n = self._cuda, batch.shape[0]
        self._ctx.push()
        try:
            host_in = self._host_in[:n]
            host_in[...] = batch  # into page-locked memory: the async copy needs it
            if self._tensor_api:
                self._context.set_input_shape(self.input_name, batch.shape)
            else:
                self._context.set_binding_shape(self._names.index(self.input_name), batch.shape)
            cuda.memcpy_htod_async(self._d_in, host_in, self._stream)
            if self._tensor_api:
                ok = self._context.execute_async_v3(self._stream.handle)
            else:
                ok = self._context.execute_async_v2(self._bindings, self._stream.handle)
            if not ok:
                raise InferenceError(f"tensorrt: execution failed for a batch of {n}")
            for host, dev in zip(self._host_outs, self._d_outs):
                cuda.memcpy_dtoh_async(host[:n], dev, self._stream)
            self._stream.synchronize()
            return [host[:n].astype(np.float32, copy=True) for host in self._host_outs]
        except cuda.Error as exc:
            raise InferenceError(f"tensorrt: CUDA error: {exc}") from exc
        finally:
            self._ctx.pop()

    def _release(self) -> None:
        mem = getattr(self, "_d_in", None)
        for dev in ([mem] if mem is not None else []) + list(getattr(self, "_d_outs", None) or []):
            dev.free()
        self._d_in, self._d_outs = None, []
        for name in ("_context", "_engine", "_runtime", "_stream", "_host_in", "_host_outs"):
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
