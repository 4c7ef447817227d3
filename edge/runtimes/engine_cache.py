"""Where TensorRT engines live on a device, and under which key.

An engine only runs on the TensorRT build, CUDA driver, Jetson Linux release / driver and GPU that
built it, and only means something for the model files and builder options it was built from. So
an engine is stored under a key of:

* ``model_digest`` — SHA-256 over the model directory's TensorRT inputs (``model.onnx``,
  ``model.int8.onnx``, ``model.int8.trt.onnx``, ``calib.cache``, whichever exist);
* the platform (:mod:`edge.platform`): full ``trt_version``, ``cuda_driver``, ``system``
  (``L4T R36.4.3`` / ``driver 550.54.15``), ``gpu_name``, ``compute_capability``;
* ``dla_core`` (``None``: the GPU), ``precision`` *requested*, ``max_batch`` (the optimisation
  profile is 1..max_batch) and the builder options (``workspace_mb``, ``fp16_fallback``).

After a JetPack or driver update the key changes, the look-up misses and the engine is rebuilt;
an entry whose files are damaged is ignored (and rebuilt by :func:`calibration.tensorrt.ensure_engine`,
which also deserializes every hit once before trusting it).

Layout (one directory per key, its name readable by a technician; the last part is a digest of
the whole key)::

    <cache_dir>/<digest[:16]>-trt<version>-<gpu>-sm<cc>-<gpu|dlaN>-<precision>-b<max_batch>-<key8>/
        engine.plan     the serialized engine
        engine.json     sidecar: the full key, the precision actually built, engine SHA-256, ...

The sidecar is written last, so an entry without it is incomplete and ignored. The sidecar's
``built_precision`` is what the engine really runs; the runtime reports that, never the requested one.

This module is plain Python (``edge`` imports nothing of ours); :func:`key_for` probes TensorRT and
pycuda lazily.
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
from typing import Any, Mapping

from edge.atomic import write_atomic
from edge.contracts import DEFAULT_WORKSPACE_MB
from edge.errors import RuntimeUnavailable
from edge.platform import probe_platform

logger = logging.getLogger(__name__)

ENGINE_FILE = "engine.plan"
SIDECAR_FILE = "engine.json"
SIDECAR_VERSION = 2
# Files of a model directory an engine can be built from; their contents make the model digest.
ENGINE_SOURCE_FILES = ("model.onnx", "model.int8.onnx", "model.int8.trt.onnx", "calib.cache")
PRECISIONS = ("int8", "fp16", "fp32")
ENV_CACHE_DIR = "GEMSIGHT_ENGINE_CACHE"
#: Options of the device config's ``tensorrt`` block that change what the builder makes.
BUILD_OPTION_NAMES = ("workspace_mb", "fp16_fallback", "dla_core")


@dataclass(frozen=True)
class BuildOptions:
    """The builder options an engine depends on (edge.yaml ``runtime.options.tensorrt``).

    Attributes:
        workspace_mb: the builder's workspace pool limit.
        fp16_fallback: where INT8 cannot be built (no fast INT8), build FP16 instead of FP32; and
            let weakly typed INT8 builds run their unquantized layers in FP16.
        dla_core: build for this DLA core (GPU fallback on) instead of the GPU; ``None``: the GPU.
    """

    workspace_mb: int = DEFAULT_WORKSPACE_MB
    fp16_fallback: bool = True
    dla_core: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.workspace_mb, bool) or not isinstance(self.workspace_mb, int) or self.workspace_mb < 16:
            raise ValueError(f"workspace_mb must be an integer of at least 16 (MiB), got {self.workspace_mb!r}")
        if self.dla_core is not None and (isinstance(self.dla_core, bool) or not isinstance(self.dla_core, int)
                                          or self.dla_core < 0):
            raise ValueError(f"dla_core must be a DLA core number (0, 1, ...) or null, got {self.dla_core!r}")

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None) -> "BuildOptions":
        """The build options among a runtime's keyword options (others are ignored)."""
        options = options or {}
        return cls(**{k: options[k] for k in BUILD_OPTION_NAMES if options.get(k) is not None})


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on; two builds with equal keys are interchangeable."""

    model_digest: str
    trt_version: str
    cuda_driver: str
    system: str
    gpu_name: str
    compute_capability: str
    dla_core: int | None
    precision: str
    max_batch: int
    workspace_mb: int
    fp16_fallback: bool

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"engine precision must be one of {', '.join(PRECISIONS)}, got '{self.precision}'")
        if int(self.max_batch) < 1:
            raise ValueError(f"max_batch must be at least 1, got {self.max_batch}")

    @property
    def device_part(self) -> str:
        return "gpu" if self.dla_core is None else f"dla{int(self.dla_core)}"

    @property
    def dirname(self) -> str:
        """The entry's directory name: readable, safe on any filesystem, unique to the whole key."""
        whole = hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:8]
        return (f"{self.model_digest[:16]}-trt{_slug(self.trt_version)}-{_slug(self.gpu_name)}"
                f"-sm{_slug(self.compute_capability)}-{self.device_part}-{self.precision}-b{int(self.max_batch)}"
                f"-{whole}")

    @property
    def options(self) -> BuildOptions:
        return BuildOptions(self.workspace_mb, self.fp16_fallback, self.dla_core)

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
        raise RuntimeUnavailable(f"{model_dir}: no TensorRT engine source in it "
                                 f"(looked for {', '.join(ENGINE_SOURCE_FILES)})")
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
    except (OSError, ValueError) as exc:  # ValueError: bad JSON or not UTF-8
        logger.warning("engine sidecar %s is unreadable (%s); ignoring it", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def lookup(cache_dir: str | Path, key: EngineKey) -> CachedEngine | None:
    """The cached engine for ``key``, or ``None``.

    An entry counts only if its sidecar names exactly this key and the engine file's SHA-256
    matches the sidecar; a damaged entry is reported with a warning (the builder then rebuilds it).
    """
    entry = entry_dir(cache_dir, key)
    engine = entry / ENGINE_FILE
    sidecar_path = entry / SIDECAR_FILE
    if not (engine.is_file() and sidecar_path.is_file()):
        return None
    sidecar = read_sidecar(engine)
    if sidecar.get("key") != key.as_dict():
        logger.warning("engine cache entry %s has an unreadable sidecar or belongs to another key; ignoring it",
                       entry)
        return None
    try:
        digest = _sha256(engine)
    except OSError as exc:
        logger.warning("engine %s is unreadable (%s); ignoring it", engine, exc)
        return None
    if sidecar.get("engine_sha256") != digest:
        logger.warning("engine %s does not match its sidecar digest (corrupted or half-written); ignoring it", engine)
        return None
    return CachedEngine(engine, sidecar)


def discard(cache_dir: str | Path, key: EngineKey) -> None:
    """Remove ``key``'s entry (sidecar first, so a crash halfway leaves an ignored, incomplete entry)."""
    entry = entry_dir(cache_dir, key)
    for name in (SIDECAR_FILE, ENGINE_FILE):
        (entry / name).unlink(missing_ok=True)


def older_entries(cache_dir: str | Path, key: EngineKey) -> list[CachedEngine]:
    """Entries of the same model, precision and batch built for another platform or options (e.g.
    before a JetPack update): what a rebuild replaces, for the log."""
    same = {k: v for k, v in key.as_dict().items() if k in ("model_digest", "precision", "max_batch")}
    out = []
    for entry in list_entries(cache_dir):
        other = entry.sidecar.get("key") or {}
        if other != key.as_dict() and all(other.get(k) == v for k, v in same.items()):
            out.append(entry)
    return out


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


def make_key(model_dir: str | Path, platform: "Any", precision: str, max_batch: int,
             options: BuildOptions | None = None) -> EngineKey:
    """The key of ``model_dir``'s engine on ``platform`` (an :class:`edge.platform.Platform`)."""
    opts = options or BuildOptions()
    return EngineKey(model_digest(model_dir), platform.trt_version, platform.cuda_driver, platform.system,
                     platform.gpu_name, platform.compute_capability, opts.dla_core, precision, int(max_batch),
                     int(opts.workspace_mb), bool(opts.fp16_fallback))


def key_for(model_dir: str | Path, precision: str, max_batch: int, device_index: int = 0,
            options: BuildOptions | None = None) -> EngineKey:
    """The engine key for a model directory on this machine (probes TensorRT, CUDA and the GPU).

    Raises:
        RuntimeUnavailable: TensorRT/pycuda missing, no CUDA device, or no engine source in ``model_dir``.
    """
    return make_key(model_dir, probe_platform(device_index), precision, max_batch, options)
