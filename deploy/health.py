"""After a switch: restart the edge service when systemd runs it, and wait for its heartbeat.

The device config is read through :mod:`edge.config.device`, as the edge reads it; deploy keeps only what
it needs (device name, publish endpoint, precision, the engine's max batch and cache).
"""
from __future__ import annotations

import json
import logging
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from edge.config.device import ModelConfig, engine_max_batch, load_config, tensorrt_options
from edge.contracts import DEFAULT_MAX_BATCH
from edge.errors import BundleError, ConfigError, LinkError
from edge.runtimes.engine_cache import BuildOptions

if TYPE_CHECKING:
    from edge.link.client import ClientKeys

logger = logging.getLogger(__name__)

EDGE_UNIT = "gemsight-edge.service"
ENGINE_UNIT = "gemsight-engine.service"


@dataclass(frozen=True)
class DeviceSettings:
    """The few device-config values deploy uses (defaults: a device not configured yet)."""

    device: str | None = None
    endpoint: str | None = None
    precision: str = ModelConfig.model_fields["precision"].default
    max_batch: int = DEFAULT_MAX_BATCH           # TensorRT profile: part of the engine cache key
    engine_cache: str | None = None              # runtime options' tensorrt.engine_cache
    build: BuildOptions = field(default_factory=BuildOptions)  # tensorrt workspace/FP16 fallback/DLA core
    device_index: int = 0                        # tensorrt.device: the CUDA device
    curve: bool = False                          # publish.curve set: the heartbeat needs deploy's client key


def read_device_settings(config_path: str | Path) -> DeviceSettings:
    """What deploy needs of ``edge.yaml``, read through :func:`edge.config.device.load_config` (the edge's
    own validation); a missing file gives the defaults (a device not configured yet).

    Raises:
        ConfigError: the file exists but is not a valid device config (every problem named).
    """
    path = Path(config_path)
    if not path.is_file():
        return DeviceSettings()
    cfg = load_config(path)
    trt = tensorrt_options(cfg)
    cache = trt.engine_cache
    return DeviceSettings(device=cfg.device, endpoint=cfg.publish.endpoint, precision=cfg.model.precision,
                          max_batch=engine_max_batch(cfg), engine_cache=str(cache) if cache else None,
                          build=BuildOptions(trt.workspace_mb, trt.fp16_fallback, trt.dla_core),
                          device_index=trt.device, curve=cfg.publish.curve is not None)


def connect_endpoint(endpoint: str) -> str:
    """A bind endpoint (``tcp://*:5555``) turned into one a local subscriber can connect to."""
    for wildcard in ("tcp://*:", "tcp://0.0.0.0:"):
        if endpoint.startswith(wildcard):
            return "tcp://127.0.0.1:" + endpoint[len(wildcard):]
    if endpoint.startswith("tcp://[::]:"):
        return "tcp://[::1]:" + endpoint[len("tcp://[::]:"):]
    return endpoint


def _systemctl(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["systemctl", *args], capture_output=True, text=True, timeout=timeout, check=False)


def systemd_runs_edge(live_root: bool) -> bool:
    """True when this is the live root, systemd is PID 1 and the edge unit is active or enabled."""
    if not live_root or shutil.which("systemctl") is None or not Path("/run/systemd/system").is_dir():
        return False
    for verb in ("is-active", "is-enabled"):
        try:
            if _systemctl(verb, "--quiet", EDGE_UNIT, timeout=10).returncode == 0:
                return True
        except (OSError, subprocess.TimeoutExpired):
            return False
    return False


def restart_edge() -> None:
    """``systemctl restart`` the edge unit (Type=notify: returns once the new process is READY).

    Raises:
        BundleError: systemctl failed (its stderr in the message).
    """
    t0 = time.perf_counter()
    try:
        proc = _systemctl("restart", EDGE_UNIT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BundleError(f"systemctl restart {EDGE_UNIT} failed: {exc}") from exc
    if proc.returncode != 0:
        raise BundleError(f"systemctl restart {EDGE_UNIT} failed: {proc.stderr.strip() or proc.returncode}")
    logger.info("restarted %s in %.1fs", EDGE_UNIT, time.perf_counter() - t0)


def heartbeat_keys(server_public: str | Path, client_secret: str | Path) -> "ClientKeys":
    """Deploy's CURVE keys for the heartbeat check: the device's public key and deploy's own client
    certificate (``gemsight-deploy install`` makes both and allows the client).

    Raises:
        BundleError: a key file is missing or unreadable.
    """
    from edge.link.client import ClientKeys  # noqa: PLC0415

    try:
        return ClientKeys.load(str(server_public), str(client_secret))
    except ConfigError as exc:
        raise BundleError(f"cannot hear the edge's CURVE heartbeat: {exc} (run gemsight-deploy install)") from exc


def wait_for_heartbeat(endpoint: str, device: str | None, timeout: float,
                       versions: Iterable[str] = (), keys: "ClientKeys | None" = None) -> dict:
    """Subscribe to ``endpoint`` and wait for a heartbeat from the edge loop.

    A heartbeat is a ``[topic, json]`` message whose topic is ``gemsight/<device>/.../heartbeat``
    (any device when ``device`` is None). When the JSON names the model version
    (``model.version`` or ``model_version``) it must be one of ``versions``: an old process still
    shutting down does not count.

    With ``keys`` the subscription is CURVE (a device with ``publish.curve``), else plaintext.

    Returns:
        The heartbeat's JSON.

    Raises:
        BundleError: none arrived within ``timeout`` seconds, or the edge refused the handshake.
    """
    import zmq  # noqa: PLC0415

    from edge.link.client import Link  # noqa: PLC0415

    endpoint = connect_endpoint(endpoint)
    wanted = {v for v in versions if v}
    prefix = f"gemsight/{device}/" if device else "gemsight/"
    link = Link(zmq.SUB, endpoint, keys, plaintext=keys is None, device=device)
    sock = link.socket
    sock.setsockopt_string(zmq.SUBSCRIBE, prefix)
    deadline = time.monotonic() + timeout
    try:
        while (left := deadline - time.monotonic()) > 0:
            try:
                if not link.poll_in(left):
                    continue
            except LinkError as exc:
                raise BundleError(f"no heartbeat: {exc}") from exc
            parts = sock.recv_multipart()
            if len(parts) != 2 or not parts[0].decode(errors="replace").endswith("/heartbeat"):
                continue
            try:
                msg = json.loads(parts[1])
            except (UnicodeDecodeError, json.JSONDecodeError):
                logger.warning("ignoring a heartbeat that is not JSON on %s", parts[0][:80])
                continue
            model = msg.get("model") if isinstance(msg, dict) else None
            seen = (model.get("version") if isinstance(model, dict) else None) or (
                msg.get("model_version") if isinstance(msg, dict) else None)
            if wanted and seen and seen not in wanted:
                logger.debug("heartbeat from model %s, waiting for %s", seen, sorted(wanted))
                continue
            logger.info("heartbeat on %s from %s", endpoint, parts[0].decode(errors="replace"))
            return msg if isinstance(msg, dict) else {"heartbeat": msg}
    finally:
        link.close()
    raise BundleError(f"no heartbeat from the edge on {endpoint} (topic {prefix}.../heartbeat) within {timeout:g}s")
