"""``gemsight-edge check``: bind the publish endpoints, say what this machine offers, load the model,
then read one frame from every camera, before a device goes into service."""
from __future__ import annotations

import time

import zmq

from edge.capture.sources import CameraSource, Status
from edge.cli.environment import environment_lines
from edge.config.device import DeviceConfig
from edge.errors import ConfigError, RuntimeUnavailable, SourceError
from edge.loop.model import open_model
from edge.loop.slots import SlotMap


def check_endpoints(config: DeviceConfig, source: str = "config") -> str:
    """Bind the publish endpoints as ``run`` will (PUB, then the snapshot REP), then release them.

    Catches what the config's syntax cannot: an address this host does not have, a port in use
    (another process, or both endpoints the same), a missing ``ipc://`` directory.

    Returns:
        One line for people.

    Raises:
        ConfigError: naming the field, the endpoint and the reason.
    """
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
