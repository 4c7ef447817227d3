"""``gemsight-deploy install``: lay out the service user, directories, config and systemd units on a root.

Into ``/`` it also creates the user (``systemd-sysusers``, else ``useradd``), hands the edge its
state directories, and enables the units. Into any other root (an image being built, a test) it
only writes files: the sysusers.d entry then creates the user on the image's first boot, and
nothing needs root privileges.
"""
from __future__ import annotations

import logging
import os
import grp
import pwd
import re
import shutil
import socket
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Iterable

from deploy.keys import load_public_key
from deploy.layout import DeviceLayout
from edge.atomic import write_atomic
from edge.errors import ConfigError

logger = logging.getLogger(__name__)

UNITS = ("gemsight-engine.service", "gemsight-edge.service")
UNIT_BIN_DIR = "/opt/gemsight/venv/bin"  # what the unit files in systemd/ say; replaced on install
SERVICE_USER = "gemsight"
RESTART_STEPS_SYSTEMD = 254
BACKOFF_DROPIN = """\
# Installed by gemsight-deploy for systemd >= 254: restart delays grow from RestartSec= (5 s)
# in RestartSteps= steps up to RestartMaxDelaySec= while the edge keeps failing.
[Service]
RestartSteps=6
RestartMaxDelaySec=5min
"""


def systemd_source_dir() -> Path:
    """The unit files (units, environment file, sysusers entry): this checkout's ``systemd/`` folder,
    else ``<prefix>/share/gemsight/systemd`` where a wheel install puts them."""
    candidates = [Path(__file__).resolve().parents[1] / "systemd", Path(sys.prefix) / "share" / "gemsight" / "systemd"]
    for path in candidates:
        if (path / UNITS[1]).is_file():
            return path
    raise ConfigError(f"systemd unit files not found in {' or '.join(map(str, candidates))}")


def local_systemd_version() -> int | None:
    """The running systemd's version number, ``None`` when there is no systemctl."""
    if shutil.which("systemctl") is None:
        return None
    try:
        out = subprocess.run(["systemctl", "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.match(r"systemd (\d+)", out)
    return int(m.group(1)) if m else None


def render_unit(text: str, bin_dir: str | Path) -> str:
    """A unit file with its ``ExecStart`` programs pointed at ``bin_dir``."""
    return text.replace(UNIT_BIN_DIR + "/", str(bin_dir).rstrip("/") + "/")


def default_config(device: str) -> str:
    """The edge's example config (edge/defaults/edge.yaml) for this device, with the TensorRT
    engine cache in the device's engines directory."""
    from edge.link.messages import check_id  # noqa: PLC0415

    text = (resources.files("edge") / "defaults" / "edge.yaml").read_text(encoding="utf-8")
    text = re.sub(r"(?m)^device: .*$", f"device: {check_id(device, 'device')}", text, count=1)
    return re.sub(r"(?m)^(\s*tensorrt: \{)(.*)\}", r"\1\2, engine_cache: /var/lib/gemsight/engines}", text, count=1)


def install_link_keys(layout: DeviceLayout) -> list[str]:
    """The device's CURVE key pair and allow-list, made once (an existing key is never replaced).

    * ``credentials/server.key_secret`` (0600, in the 0700 credentials directory the edge unit loads
      with ``LoadCredential=``: the edge reads it as ``gemsight_server.key_secret``);
    * ``server.key``: its public half, for the kiosks to pin;
    * ``clients/`` (0755): the allow-list, holding deploy's own client key so that ``flash`` can hear
      the heartbeat (its secret in ``deploy/``, 0700).

    Returns:
        One line per thing done.
    """
    from edge.link.keys import allow, create_key_pair  # noqa: PLC0415

    done = []
    layout.clients_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(layout.clients_dir, 0o755)
    secret = layout.credentials_dir / "server.key_secret"
    if not secret.exists():
        public, _ = create_key_pair(layout.credentials_dir, "server")
        os.replace(public, layout.server_public_path)
        done.append(f"made the device's CURVE key pair: {secret} (0600), public {layout.server_public_path}")
    layout.deploy_key_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(layout.deploy_key_dir, 0o700)
    if not layout.deploy_key_path.exists():
        public, _ = create_key_pair(layout.deploy_key_dir, layout.deploy_key_path.name.removesuffix(".key_secret"))
        if not (layout.clients_dir / public.name).exists():
            allow(public, layout.clients_dir)
        done.append(f"made deploy's CURVE client key {layout.deploy_key_path} and allowed it in {layout.clients_dir}")
    return done


def _write(path: Path, text: str, mode: int = 0o644, overwrite: bool = True) -> bool:
    if path.exists() and not overwrite:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text, mode)
    return True


def _default_bin_dir() -> Path:
    here = Path(sys.executable).parent
    return here if (here / "gemsight-deploy").exists() else Path(UNIT_BIN_DIR)


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def _create_user(sysusers_conf: Path) -> str:
    try:
        pwd.getpwnam(SERVICE_USER)
        return f"user {SERVICE_USER} exists"
    except KeyError:
        pass
    if shutil.which("systemd-sysusers"):
        cmd = ["systemd-sysusers", str(sysusers_conf)]
    else:
        # render: the DRM render nodes CUDA opens on JetPack 6.x; the unit names it, so it must exist
        # (systemd-sysusers creates it from the `m` line; here groupadd does).
        for group in ("video", "render"):
            if not _group_exists(group):
                subprocess.run(["groupadd", "--system", group], capture_output=True, text=True, check=False)
        groups = ",".join(g for g in ("video", "render") if _group_exists(g))
        cmd = ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/var/lib/gemsight/edge",
               "--shell", "/usr/sbin/nologin", *(["--groups", groups] if groups else []), SERVICE_USER]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ConfigError(f"creating user {SERVICE_USER} failed ({' '.join(cmd)}): {proc.stderr.strip()}")
    return f"created user {SERVICE_USER} ({cmd[0]})"


def install(root: str | Path = "/", device: str | None = None, pubkeys: Iterable[str | Path] = (),
            bin_dir: str | Path | None = None, systemd_version: int | None = None,
            systemctl: bool = True, venv: str | Path | None = None, system_site_packages: bool | None = None,
            pip_install: Iterable[str] = (), venv_with_pip: bool = True) -> list[str]:
    """Install gemsight's device files under ``root``; returns one line per thing done.

    Existing ``edge.yaml`` and ``gemsight.env`` are kept; units, the sysusers entry and keys are
    (re)written.

    Args:
        root: target root (``/`` for this machine).
        device: device name for a new ``edge.yaml`` (default: the host name).
        pubkeys: public keys to trust for bundles (copied as ``<key id>.pub``).
        bin_dir: directory holding ``gemsight-edge`` and ``gemsight-deploy`` on the target.
        systemd_version: the target's systemd; >= 254 adds the restart back-off drop-in. Default:
            this machine's on ``/``, else unknown (no drop-in).
        systemctl: on ``/``, run ``systemctl daemon-reload`` and enable the units.
        venv: create this venv (the units then run its ``bin``); see :mod:`deploy.venv`.
        system_site_packages: let the venv see the system's packages; default: on a Jetson (where
            JetPack's TensorRT and GStreamer OpenCV live there), else not.
        pip_install: what to ``pip install`` into the new venv (requirements or wheel paths).
        venv_with_pip: bootstrap pip into the new venv.

    Raises:
        ConfigError: a key is not an ed25519 public key, or a system command failed.
    """
    layout = DeviceLayout(root)
    live = layout.is_live_root
    src = systemd_source_dir()
    done: list[str] = []
    if venv is not None:
        from deploy.venv import create_venv, is_jetson  # noqa: PLC0415

        sees_system = is_jetson(root) if system_site_packages is None else system_site_packages
        done += create_venv(venv, sees_system, list(pip_install), with_pip=venv_with_pip)
        bin_dir = bin_dir or Path(venv) / "bin"
    bin_dir = Path(bin_dir) if bin_dir else _default_bin_dir()
    for d, mode in ((layout.models_dir, 0o755), (layout.engines_dir, 0o755), (layout.edge_state_dir, 0o750),
                    (layout.deploy_dir, 0o700), (layout.etc_dir, 0o755), (layout.keys_dir, 0o755),
                    (layout.credentials_dir, 0o700)):
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, mode)
    done.append(f"directories under {layout.state_dir} and {layout.etc_dir}")
    done += install_link_keys(layout)
    for path, text in ((layout.sysusers_path, (src / "gemsight.sysusers.conf").read_text()),
                       *((layout.unit_dir / u, render_unit((src / u).read_text(), bin_dir)) for u in UNITS)):
        _write(path, text)
        done.append(f"wrote {path}")
    if systemd_version is None and live:
        systemd_version = local_systemd_version()
    dropin = layout.unit_dir / f"{UNITS[1]}.d" / "10-restart-backoff.conf"
    if systemd_version is not None and systemd_version >= RESTART_STEPS_SYSTEMD:
        _write(dropin, BACKOFF_DROPIN)
        done.append(f"wrote {dropin} (systemd {systemd_version}: growing restart delay)")
    elif dropin.exists():
        dropin.unlink()
    if _write(layout.env_path, (src / "gemsight.env").read_text(), overwrite=False):
        done.append(f"wrote {layout.env_path}")
    name = device or socket.gethostname().split(".")[0] or "gemsight"
    if _write(layout.config_path, default_config(name), overwrite=False):
        done.append(f"wrote {layout.config_path} (device {name})")
    for pub in pubkeys:
        key = load_public_key(pub)
        target = layout.keys_dir / f"{key.key_id}.pub"
        shutil.copyfile(pub, target)
        os.chmod(target, 0o644)
        done.append(f"trusted key {key.key_id} -> {target}")
    if live:
        done.append(_create_user(layout.sysusers_path))
        user = pwd.getpwnam(SERVICE_USER)
        os.chown(layout.edge_state_dir, user.pw_uid, user.pw_gid)
        # Engines are written by root only (gemsight-engine.service and flash, neither with
        # CAP_DAC_OVERRIDE) and read by the edge: root-owned, 0755 (also on devices installed before).
        os.chown(layout.engines_dir, 0, 0)
        done.append(f"{layout.edge_state_dir} owned by {SERVICE_USER}; {layout.engines_dir} by root, readable by all")
        if systemctl and shutil.which("systemctl") and Path("/run/systemd/system").is_dir():
            for cmd in (["systemctl", "daemon-reload"], ["systemctl", "enable", *UNITS]):
                proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if proc.returncode != 0:
                    raise ConfigError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
            done.append("units enabled (start with: systemctl start gemsight-edge.service)")
    return done
