"""Open the configured model on the configured runtime, and check it matches what the config expects.

Shared by the loop (``run``) and ``gemsight-edge check``: a model folder whose files do not match its
``SHA256SUMS`` or whose ``manifest.json`` disagrees with the model (:mod:`edge.model_files`), a model
whose classes or input size differ from the config's pins, or whose real input does not accept the
manifest's size, is refused before any camera is opened.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from edge.config import DeviceConfig, engine_max_batch, runtime_options
from edge.errors import ConfigError, GemsightError, ManifestError, RuntimeUnavailable, SourceError
from edge.manifest import Manifest
from edge.model_files import check_manifest_file, verify_checksums
from edge.runtimes import Runtime, create_runtime, resolve_runtime_name

logger = logging.getLogger(__name__)


@dataclass
class ModelInfo:
    """A loaded runtime, its manifest, and the ``model`` block of every labels message."""

    runtime: Runtime
    manifest: Manifest
    info: dict[str, str]
    files: str = ""  # what edge.model_files verified, one line for people


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


def check_endpoints(config: DeviceConfig, source: str = "config") -> str:
    """Bind the publish endpoints as ``run`` will (PUB, then the snapshot REP), then release them.

    Catches what the config's syntax cannot: an address this host does not have, a port in use
    (another process, or both endpoints the same), a missing ``ipc://`` directory.

    Returns:
        One line for people.

    Raises:
        ConfigError: naming the field, the endpoint and the reason.
    """
    import zmq  # noqa: PLC0415 - only check needs it here

    ctx = zmq.Context.instance()
    socks, bound = [], []
    try:
        for name, kind in (("endpoint", zmq.PUB), ("snapshot_endpoint", zmq.REP)):
            endpoint = getattr(config.publish, name)
            if endpoint is None:
                continue
            sock = ctx.socket(kind)
            sock.setsockopt(zmq.LINGER, 0)
            socks.append(sock)
            try:
                sock.bind(endpoint)
            except zmq.ZMQError as exc:
                hint = (" (in use: is gemsight-edge already running here, or are both endpoints the same?)"
                        if exc.errno == zmq.EADDRINUSE else "")
                raise ConfigError(f"{source}: publish.{name}: cannot bind '{endpoint}': {exc.strerror}{hint}") from exc
            bound.append(endpoint)
    finally:
        for sock in socks:
            sock.close(linger=0)
    return "publish: can bind " + " and ".join(bound)


def check_device(config: DeviceConfig, source: str = "config", timeout_s: float = 10.0) -> list[str]:
    """What ``gemsight-edge check`` does: bind the publish endpoints, say what this machine offers
    (TensorRT, OpenCV with or without GStreamer, runtimes), load the model, then read one frame
    from every camera.

    Returns:
        One line per checked item, for people.

    Raises:
        GemsightError: the first problem (config, model, runtime or camera), one line; a runtime
            that cannot run here also names what was found.
    """
    from edge.environment import environment_lines  # noqa: PLC0415
    from edge.slots import SlotMap  # noqa: PLC0415
    from edge.sources import CameraSource, Status  # noqa: PLC0415

    lines = [check_endpoints(config, source)]
    found = environment_lines()
    lines += found
    try:
        model = open_model(config, source)
    except RuntimeUnavailable as exc:
        raise RuntimeUnavailable(f"{exc} [found: {'; '.join(found)}]") from exc
    try:
        m = model.manifest
        lines.append(model.files)
        lines.append(f"model {m.name} {m.version} ({m.precision}) on {model.runtime.name}: "
                     f"{m.num_classes} classes, input {m.input.size[1]}x{m.input.size[0]}")
    finally:
        model.runtime.close()
    for cam in config.cameras:
        slots = SlotMap(cam.slot_list(), camera=cam.id)
        src = CameraSource(cam.id, cam.source, credentials=cam.credentials, reconnect_initial_s=timeout_s,
                           reconnect_max_s=timeout_s)
        deadline = time.monotonic() + timeout_s
        with src:
            status, frame = Status.TIMEOUT, None
            while time.monotonic() < deadline:
                status, frame = src.read(0.2)
                if status in (Status.OK, Status.EOS) or (status is Status.ERROR and src.stats.open_failures):
                    break
            detail = src.stats.detail
        if frame is None:
            reason = detail.split("; retrying")[0] if detail else f"no frame within {timeout_s:.0f}s"
            raise SourceError(f"camera {cam.id}: {reason}")
        h, w = frame.image.shape[:2]
        slots.crop(frame.image)  # a slot too small for this frame size fails here
        lines.append(f"camera {cam.id}: {w}x{h}, {len(slots)} slot(s)")
    return lines
