"""Where TensorRT engines live on a device, and under which key.

An engine only runs on the TensorRT version and GPU that built it, and only means something for
the model files it was built from. So an engine is stored under a key of:

* ``model_digest`` — SHA-256 over the model directory's TensorRT inputs (``model.onnx``,
  ``model.int8.onnx``, ``model.int8.trt.onnx``, ``calib.cache``, whichever exist): a new model or
  a new calibration makes a new key;
* ``trt_version``, ``gpu_name``, ``compute_capability``;
* ``precision`` *requested* (``int8``, ``fp16``, ``fp32``) and ``max_batch`` (the optimisation
  profile is 1..max_batch).

Layout (one directory per key, its name readable by a technician)::

    <cache_dir>/<digest[:16]>-trt<version>-<gpu>-sm<cc>-<precision>-b<max_batch>/
        engine.plan     the serialized engine
        engine.json     sidecar: the full key, the precision actually built, engine SHA-256, ...

The sidecar is written last, so an entry without it is incomplete and ignored. The sidecar's
``built_precision`` is what the engine really runs (a GPU without fast INT8 gets FP16 when INT8
was asked for); the runtime reports that, never the requested one.

This module is plain Python (``edge`` imports nothing of ours); :func:`probe_device` imports
TensorRT and pycuda lazily.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge.atomic import write_atomic
from edge.errors import RuntimeUnavailable

logger = logging.getLogger(__name__)

ENGINE_FILE = "engine.plan"
SIDECAR_FILE = "engine.json"
SIDECAR_VERSION = 1
# Files of a model directory an engine can be built from; their contents make the model digest.
ENGINE_SOURCE_FILES = ("model.onnx", "model.int8.onnx", "model.int8.trt.onnx", "calib.cache")
PRECISIONS = ("int8", "fp16", "fp32")
ENV_CACHE_DIR = "GEMSIGHT_ENGINE_CACHE"


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on; two builds with equal keys are interchangeable."""

    model_digest: str
    trt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    max_batch: int

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"engine precision must be one of {', '.join(PRECISIONS)}, got '{self.precision}'")
        if int(self.max_batch) < 1:
            raise ValueError(f"max_batch must be at least 1, got {self.max_batch}")

    @property
    def dirname(self) -> str:
        """The entry's directory name: readable, and safe on any filesystem."""
        return (f"{self.model_digest[:16]}-trt{_slug(self.trt_version)}-{_slug(self.gpu_name)}"
                f"-sm{_slug(self.compute_capability)}-{self.precision}-b{int(self.max_batch)}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CachedEngine:
    """An engine file and its sidecar."""

    path: Path
    sidecar: dict[str, Any] = field(default_factory=dict)

    @property
    def built_precision(self) -> str | None:
        """The precision the engine was really built with (``None`` if no sidecar says)."""
        value = self.sidecar.get("built_precision")
        return str(value) if value else None

    @property
    def max_batch(self) -> int | None:
        key = self.sidecar.get("key") or {}
        return int(key["max_batch"]) if "max_batch" in key else None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", str(text)).strip("_") or "unknown"


def model_digest(model_dir: str | Path) -> str:
    """SHA-256 over the names and contents of a model directory's engine sources.

    Raises:
        RuntimeUnavailable: the directory holds none of :data:`ENGINE_SOURCE_FILES`.
    """
    model_dir = Path(model_dir)
    h = hashlib.sha256()
    found = []
    for name in ENGINE_SOURCE_FILES:
        path = model_dir / name
        if path.is_file():
            found.append(name)
            h.update(name.encode() + b"\0")
            with open(path, "rb") as fh:
                while block := fh.read(1 << 20):
                    h.update(block)
            h.update(b"\0")
    if not found:
        raise RuntimeUnavailable(f"{model_dir}: no TensorRT engine source in it (looked for {', '.join(ENGINE_SOURCE_FILES)})")
    return h.hexdigest()


def default_cache_dir() -> Path:
    """``$GEMSIGHT_ENGINE_CACHE``, else systemd's ``$CACHE_DIRECTORY``/engines, else ~/.cache/gemsight/engines."""
    if os.environ.get(ENV_CACHE_DIR):
        return Path(os.environ[ENV_CACHE_DIR])
    if os.environ.get("CACHE_DIRECTORY"):
        # systemd's CacheDirectory= may list several, separated by ':'; the first is ours.
        return Path(os.environ["CACHE_DIRECTORY"].split(":")[0]) / "engines"
    return Path.home() / ".cache" / "gemsight" / "engines"


def entry_dir(cache_dir: str | Path, key: EngineKey) -> Path:
    return Path(cache_dir) / key.dirname


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def read_sidecar(engine_path: str | Path) -> dict[str, Any]:
    """The JSON sidecar beside an engine file (``engine.plan`` → ``engine.json``), or ``{}``."""
    path = Path(engine_path).with_suffix(".json")
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        logger.warning("engine sidecar %s is unreadable (%s); ignoring it", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def lookup(cache_dir: str | Path, key: EngineKey) -> CachedEngine | None:
    """The cached engine for ``key``, or ``None``.

    An entry counts only if its sidecar names exactly this key and the engine file's SHA-256
    matches the sidecar (a half-written or corrupted engine is ignored with a warning).
    """
    entry = entry_dir(cache_dir, key)
    engine = entry / ENGINE_FILE
    sidecar_path = entry / SIDECAR_FILE
    if not (engine.is_file() and sidecar_path.is_file()):
        return None
    sidecar = read_sidecar(engine)
    if sidecar.get("key") != key.as_dict():
        logger.warning("engine cache entry %s belongs to another key; ignoring it", entry)
        return None
    if sidecar.get("engine_sha256") != _sha256(engine):
        logger.warning("engine %s does not match its sidecar digest (corrupted or half-written); ignoring it", engine)
        return None
    return CachedEngine(engine, sidecar)


def store(cache_dir: str | Path, key: EngineKey, engine_bytes: bytes, built_precision: str,
          info: dict[str, Any] | None = None) -> CachedEngine:
    """Store a serialized engine under ``key`` (engine first, sidecar last, each atomically).

    Args:
        cache_dir: the engine cache directory (created if missing).
        key: the key it was built for.
        engine_bytes: the serialized engine.
        built_precision: the precision actually built (may differ from ``key.precision``).
        info: more facts for the sidecar (build mode, build seconds, source file ...).
    """
    if built_precision not in PRECISIONS:
        raise ValueError(f"built_precision must be one of {', '.join(PRECISIONS)}, got '{built_precision}'")
    entry = entry_dir(cache_dir, key)
    entry.mkdir(parents=True, exist_ok=True)
    engine = entry / ENGINE_FILE
    (entry / SIDECAR_FILE).unlink(missing_ok=True)  # the entry is incomplete until the sidecar returns
    write_atomic(engine, bytes(engine_bytes))
    sidecar = {
        "sidecar_version": SIDECAR_VERSION,
        "key": key.as_dict(),
        "built_precision": built_precision,
        "engine_sha256": hashlib.sha256(bytes(engine_bytes)).hexdigest(),
        "engine_bytes": len(engine_bytes),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(info or {}),
    }
    write_atomic(entry / SIDECAR_FILE, (json.dumps(sidecar, indent=2, sort_keys=True) + "\n").encode())
    logger.info("cached TensorRT engine %s (%s, %.1f MB)", engine, built_precision, len(engine_bytes) / 1e6)
    return CachedEngine(engine, sidecar)


def list_entries(cache_dir: str | Path) -> list[CachedEngine]:
    """Every complete entry in a cache directory (for deploy's housekeeping)."""
    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        return []
    out = []
    for entry in sorted(p for p in cache_dir.iterdir() if p.is_dir()):
        engine = entry / ENGINE_FILE
        if engine.is_file() and (entry / SIDECAR_FILE).is_file():
            out.append(CachedEngine(engine, read_sidecar(engine)))
    return out


def probe_device(device_index: int = 0) -> tuple[str, str, str]:
    """``(trt_version, gpu_name, compute_capability)`` of this machine.

    Raises:
        RuntimeUnavailable: TensorRT or pycuda is missing, or no CUDA device answers.
    """
    try:
        import tensorrt as trt  # noqa: PLC0415
        import pycuda.driver as cuda  # noqa: PLC0415
    except ImportError as exc:
        raise RuntimeUnavailable(
            f"TensorRT/pycuda not installed ({exc.name}); they come with JetPack ('gemsight[jetson]')") from exc
    try:
        cuda.init()
        dev = cuda.Device(device_index)
        major, minor = dev.compute_capability()
        return str(trt.__version__), str(dev.name()), f"{major}.{minor}"
    except Exception as exc:  # pycuda raises its own LogicError/RuntimeError family
        raise RuntimeUnavailable(f"no usable CUDA device {device_index}: {exc}") from exc


def key_for(model_dir: str | Path, precision: str, max_batch: int, device_index: int = 0) -> EngineKey:
    """The engine key for a model directory on this machine (probes TensorRT and the GPU)."""
    trt_version, gpu, cc = probe_device(device_index)
    return EngineKey(model_digest(model_dir), trt_version, gpu, cc, precision, int(max_batch))
