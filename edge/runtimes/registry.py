"""Which backends exist, which can run here, and opening a model with one: ``create_runtime("auto" | name, ...)``.

The built-in backends register themselves (:func:`edge.runtimes.base.register_runtime`) when imported
here; each imports its own library (ONNX Runtime, OpenVINO, TensorRT) only when a model is opened.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from edge.errors import ConfigError, RuntimeUnavailable
from edge.manifest import Manifest, load_manifest_for
from edge.runtimes import onnxruntime_rt, openvino_rt, tensorrt_rt  # noqa: F401 - importing them registers them
from edge.runtimes.artifacts import select_artifact
from edge.runtimes.base import AUTO_ORDER, REGISTRY, Runtime

logger = logging.getLogger(__name__)


def registered_runtimes() -> dict[str, type[Runtime]]:
    """Every backend gemsight knows, whether or not it can run here."""
    return dict(REGISTRY)


def available_runtimes() -> dict[str, str | None]:
    """Backend name → ``None`` if it can run here, else the reason it cannot."""
    out = {}
    for name, cls in registered_runtimes().items():
        try:
            out[name] = cls.unavailable_reason()
        except Exception as exc:  # a broken install must read as unavailable, not crash
            out[name] = f"{type(exc).__name__}: {exc}"
    return out


def resolve_runtime_name(name: str) -> str:
    """Map ``auto`` to the best available backend; check a named one exists and can run here.

    Raises:
        ConfigError: unknown name.
        RuntimeUnavailable: a named backend that cannot run here (never a silent fallback).
    """
    avail = available_runtimes()
    if name == "auto":
        for candidate in AUTO_ORDER:
            if avail.get(candidate) is None and candidate in avail:
                logger.info("runtime auto: using %s (%s)", candidate,
                            ", ".join(f"{k}: {v}" for k, v in avail.items() if v) or "all available")
                return candidate
        raise RuntimeUnavailable("no inference runtime is available: " +
                                 "; ".join(f"{k}: {v}" for k, v in avail.items()))
    if name not in avail:
        raise ConfigError(f"unknown runtime '{name}' (known: auto, {', '.join(sorted(avail))})")
    if avail[name] is not None:
        raise RuntimeUnavailable(f"runtime '{name}' is not available here: {avail[name]}")
    return name


def create_runtime(name: str, model_path: str | Path, manifest: Manifest | None = None, **options: Any) -> Runtime:
    """Open ``model_path`` with the backend ``name`` (or ``auto``).

    ``model_path`` may be a model directory (a calibration output or installed bundle): the artifact
    that suits the backend and the ``precision`` option (``int8`` by default where one exists) is
    chosen by :func:`edge.runtimes.artifacts.select_artifact`.
    """
    resolved = resolve_runtime_name(name)
    precision = options.pop("precision", "auto")
    artifact = select_artifact(model_path, resolved, precision)
    if manifest is None:
        manifest = load_manifest_for(artifact.manifest_source)
    if artifact.precision and manifest.precision != artifact.precision:
        manifest = manifest.updated(precision=artifact.precision)
    logger.info("loading %s with %s (%s)", artifact.path, resolved, manifest.precision)
    return REGISTRY[resolved](artifact.path, manifest, **options)
