"""``flash --ssh user@host``: copy the bundle with the system's scp and run the flash there with ssh.

The remote device verifies the bundle against *its own* trusted keys; a ``--pubkey`` given here
only adds a local verification before anything is copied. The copied bundle is removed whatever
the outcome, and the remote exit status is ours.
"""
from __future__ import annotations

import argparse
import logging
import re
import secrets
import shlex
import subprocess
from pathlib import Path
from typing import Callable, Sequence

from edge.errors import BundleError, ConfigError

logger = logging.getLogger(__name__)

BATCH_OPTIONS = ("BatchMode=yes", "ConnectTimeout=20", "ServerAliveInterval=15")
_TARGET = re.compile(r"^(?:[A-Za-z0-9._][A-Za-z0-9._-]*@)?(?:[A-Za-z0-9][A-Za-z0-9.-]*|\[[0-9A-Fa-f:.]+\])$")
_REMOTE_DIR = re.compile(r"^/[A-Za-z0-9._/-]*$")


def check_target(target: str) -> str:
    """``[user@]host`` with nothing an ssh could read as an option."""
    if not _TARGET.match(target or ""):
        raise ConfigError(f"--ssh '{target}': expected user@host (letters, digits, '.', '-', '_')")
    return target


def remote_bundle_path(bundle: Path, remote_dir: str) -> str:
    """Where the bundle goes on the device: a fresh, shell-safe name in ``remote_dir``."""
    if not _REMOTE_DIR.match(remote_dir) or ".." in remote_dir.split("/"):
        raise ConfigError(f"--remote-dir '{remote_dir}': expected an absolute path of [A-Za-z0-9._/-]")
    return f"{remote_dir.rstrip('/')}/gemsight-{secrets.token_hex(4)}.gsb"


def _opts(options: Sequence[str]) -> list[str]:
    out = []
    for opt in (*BATCH_OPTIONS, *options):
        out += ["-o", opt]
    return out


def build_scp_command(bundle: Path, target: str, remote_path: str, port: int | None = None,
                      options: Sequence[str] = ()) -> list[str]:
    """The scp argv copying ``bundle`` to ``target:remote_path``."""
    cmd = ["scp", "-q", *_opts(options)]
    if port:
        cmd += ["-P", str(port)]
    return cmd + ["--", str(bundle), f"{check_target(target)}:{remote_path}"]


def build_remote_flash(remote_command: str, remote_path: str, args: argparse.Namespace) -> list[str]:
    """The ``gemsight-deploy flash`` argv to run on the device, forwarding the flags that apply there."""
    argv = [*shlex.split(remote_command), "flash", remote_path, "--root", str(args.root)]
    for flag in ("allow_downgrade", "no_restart"):
        if getattr(args, flag, False):
            argv.append("--" + flag.replace("_", "-"))
    for opt in ("heartbeat_endpoint", "heartbeat_timeout", "runtime", "precision", "max_batch", "keep", "reserve_mb"):
        value = getattr(args, opt, None)
        if value is not None:
            argv += ["--" + opt.replace("_", "-"), str(value)]
    return argv


def build_ssh_command(target: str, remote_argv: Sequence[str], remote_path: str, port: int | None = None,
                      options: Sequence[str] = (), sudo: bool = False) -> list[str]:
    """The ssh argv running the flash on ``target`` and then removing the copied bundle.

    ssh hands the remote shell one string, so every word is quoted with :func:`shlex.quote`.
    """
    prefix = "sudo -n " if sudo else ""
    script = (f"{prefix}{shlex.join(remote_argv)}; rc=$?; {prefix}rm -f -- {shlex.quote(remote_path)}; exit $rc")
    cmd = ["ssh", *_opts(options)]
    if port:
        cmd += ["-p", str(port)]
    return cmd + ["--", check_target(target), script]


def remote_flash(args: argparse.Namespace, runner: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> int:
    """Run ``flash`` on ``args.ssh``; returns the remote exit status.

    Raises:
        BundleError: the local verification (with ``--pubkey``) or the copy failed.
    """
    bundle = Path(args.bundle)
    if not bundle.is_file():
        raise BundleError(f"{bundle}: no such bundle")
    if args.pubkey:
        from deploy.keys import trusted_keys  # noqa: PLC0415
        from deploy.verify import verify_bundle  # noqa: PLC0415
        verify_bundle(bundle, trusted_keys(args.pubkey, use_credentials=False))
    remote_path = remote_bundle_path(bundle, args.remote_dir)
    scp = build_scp_command(bundle, args.ssh, remote_path, args.ssh_port, args.ssh_option)
    logger.info("copying %s to %s:%s", bundle, args.ssh, remote_path)
    proc = runner(scp, check=False)
    if proc.returncode != 0:
        raise BundleError(f"copying {bundle} to {args.ssh} failed (scp exit {proc.returncode})")
    remote_argv = build_remote_flash(args.remote_command, remote_path, args)
    ssh = build_ssh_command(args.ssh, remote_argv, remote_path, args.ssh_port, args.ssh_option, args.sudo)
    logger.info("flashing on %s: %s", args.ssh, shlex.join(remote_argv))
    rc = runner(ssh, check=False).returncode
    if rc != 0:
        logger.error("remote flash on %s exited %d", args.ssh, rc)
    return rc
