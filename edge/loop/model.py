"""Open the configured model on the configured runtime, and check it matches what the config expects.

Shared by the loop (``run``) and ``gemsight-edge check`` (:mod:`edge.cli.check`): a model folder whose
files do not match its ``SHA256SUMS`` or whose ``manifest.json`` disagrees with the model
(:mod:`edge.runtimes.model_files`), a model whose classes or input size differ from the config's pins, or
whose real input does not accept the manifest's size, is refused before any camera is opened.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from edge.config.device import DeviceConfig, engine_max_batch
from edge.config.runtime import runtime_options
from edge.errors import ConfigError, GemsightError, ManifestError
from edge.manifest import Manifest
from edge.runtimes.base import Runtime
from edge.runtimes.model_files import check_manifest_file, verify_checksums
from edge.runtimes.registry import create_runtime, resolve_runtime_name

logger = logging.getLogger(__name__)


@dataclass
class ModelInfo:
    """A loaded runtime, its manifest, and the ``model`` block of every labels message."""

    runtime: Runtime
    manifest: Manifest
    info: dict[str, str]
    files: str = ""  # what edge.runtimes.model_files verified, one line for people


def check_model(config: DeviceConfig, manifest: Manifest, source: str = "config") -> None:
    """Compare the config's optional pins (``model.classes``, ``model.input_size``) with the manifest.

    Raises:
        ConfigError: naming the field, the config's value and the model's.
    """
    pins = config.model
    if pins.classes is not None and tuple(pins.classes) != tuple(manifest.classes):
        raise ConfigError(f"{source}: model.classes {list(pins.classes)} does not match the model "
                          f"{pins.path} (its manifest has {list(manifest.classes)})")
    if pins.input_size is not None and tuple(pins.input_size) != tuple(manifest.input.size):
        raise ConfigError(f"{source}: model.input_size {list(pins.input_size)} does not match the model "
                          f"{pins.path} (its manifest says {list(manifest.input.size)})")


def open_model(config: DeviceConfig, source: str = "config") -> ModelInfo:
    """Create the runtime for ``config.model`` and prove it runs with one warm-up batch.

    ``auto`` is resolved first so the options block of the backend it picks is used.

    Raises:
        ConfigError: unknown runtime name, or a pinned class list / input size that differs.
        RuntimeUnavailable: a named runtime that cannot run here.
        ManifestError: a file that does not match ``SHA256SUMS`` (or no ``SHA256SUMS`` where
            ``model.checksums`` requires one), a ``manifest.json`` that is invalid or disagrees with the
            model, no readable manifest, or a model that does not accept its manifest's input or gives
            an output of another width than the class list.
    """
    files = verify_checksums(config.model.path, config.model.checksums)  # before a byte of it is loaded
    resolved = resolve_runtime_name(config.runtime.name)
    options: dict[str, Any] = runtime_options(config.runtime, resolved)
    if resolved == "tensorrt":
        options["max_batch"] = engine_max_batch(config)  # the engine deploy built for this config
    t0 = time.monotonic()
    runtime = create_runtime(resolved, config.model.path, precision=config.model.precision, **options)
    try:
        check_manifest_file(config.model.path, runtime.manifest)
        check_model(config, runtime.manifest, source)
        blank = runtime.blank(1)
        try:
            runtime(blank)
        except GemsightError:
            raise  # already says what is wrong (e.g. output width vs classes)
        except Exception as exc:  # backends raise their own types (ONNX Runtime: InvalidArgument)
            raise ManifestError(f"{runtime.model_path}: the model does not run on its manifest's input "
                                f"{'x'.join(map(str, blank.shape))} ({runtime.input_kind}): {exc}") from exc
    except Exception:
        runtime.close()
        raise
    m = runtime.manifest
    h, w = m.input.size
    info = {"name": m.name, "version": m.version, "precision": m.precision, "backend": runtime.name}
    logger.info("model %s %s (%s, %d classes, %dx%d) on %s, ready in %.2fs", m.name, m.version, m.precision,
                m.num_classes, w, h, runtime.name, time.monotonic() - t0)
    return ModelInfo(runtime, m, info, files)
