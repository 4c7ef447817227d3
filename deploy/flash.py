"""Flashing a bundle onto a device root, crash-safely, and recovering from an interrupted flash.

The order is what makes a power cut harmless: verify everything (nothing touched), write the
journal, unpack into a hidden temporary directory, build/check the engine and run the smoke
inference there, rename it to ``models/<version>``, then switch the links by renaming new links
over the old ones (``previous`` first, then ``current``), restart the edge and wait for its
heartbeat, and only then mark the journal committed. Until the commit a crash is undone by the next
operation (or ``status``): links are restored from the journal and what the flash created is
removed. So ``current`` always names a complete, verified version: the old one, or (once
committed) the new one.

``GEMSIGHT_FLASH_KILL_AT=<checkpoint name or index>`` makes the process SIGKILL itself at that point
of :data:`CHECKPOINTS` (the crash-safety test uses it).
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from deploy.bundle import SUMS, SemVer
from deploy.engine import EngineTarget, ensure_engine_for, smoke_test
from deploy.health import heartbeat_keys, read_device_settings, restart_edge, systemd_runs_edge, wait_for_heartbeat
from deploy.keys import trusted_keys
from deploy.layout import CURRENT, PREVIOUS, DeviceLayout
from deploy.verify import extract_verified, verify_bundle
from edge.atomic import fsync_dir
from edge.errors import BundleError

logger = logging.getLogger(__name__)

KILL_ENV = "GEMSIGHT_FLASH_KILL_AT"
FLASH_CHECKPOINTS = (
    "locked", "recovered", "verified", "journal_written", "tmpdir_created", "unpacked_one", "unpacked",
    "engine_ready", "smoke_passed", "renamed", "journal_switching", "previous_linked", "current_tmp_link",
    "current_linked", "switched", "healthy", "committed", "pruned", "done")
# Points inside a switch back (no heartbeat) and inside rollback; same mechanism.
RESTORE_CHECKPOINTS = ("restore_previous_linked", "restore_current_tmp_link", "restore_current_linked")
ROLLBACK_CHECKPOINTS = ("rollback_journal", "rollback_previous_linked", "rollback_current_tmp_link",
                        "rollback_current_linked", "rollback_switched")
CHECKPOINTS = FLASH_CHECKPOINTS + RESTORE_CHECKPOINTS + ROLLBACK_CHECKPOINTS
DEFAULT_RESERVE = 64 << 20


def checkpoint(name: str) -> None:
    """Mark a point of an operation; SIGKILL ourselves here if :data:`KILL_ENV` names it."""
    target = os.environ.get(KILL_ENV)
    if target and target in (name, str(CHECKPOINTS.index(name))):
        logger.warning("%s=%s: SIGKILL at checkpoint '%s'", KILL_ENV, target, name)
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class FlashOptions:
    """What ``gemsight-deploy flash`` can be told (defaults are the safe ones)."""

    pubkeys: Sequence[str | Path] = ()
    pubkey_dir: str | Path | None = None           # default <root>/etc/gemsight/keys
    allow_downgrade: bool = False
    restart: bool = True                           # False: --no-restart
    heartbeat_endpoint: str | None = None          # default: publish.endpoint of edge.yaml
    heartbeat_timeout: float = 60.0
    runtime: str | None = None                     # default: runtime.name of edge.yaml
    precision: str | None = None                   # default: model.precision of edge.yaml
    max_batch: int | None = None                   # default: every slot of every camera in edge.yaml
    keep: int = 3                                  # installed versions kept (current and previous always)
    reserve_bytes: int = DEFAULT_RESERVE           # free space that must remain after unpacking


@dataclass
class FlashResult:
    version: str
    replaced: str | None
    outcome: str                                   # "installed" or "already-current"
    key_id: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    smoke: dict = field(default_factory=dict)
    engine: str | None = None
    heartbeat: dict | None = None


@contextlib.contextmanager
def _timed(timings: dict[str, float], step: str) -> Iterator[None]:
    t0 = time.perf_counter()
    yield
    timings[step] = time.perf_counter() - t0
    logger.info("flash step %-8s %.3fs", step, timings[step])


def switch_links(layout: DeviceLayout, current: str | None, previous: str | None, prefix: str = "") -> None:
    """Point ``previous`` then ``current`` at the given versions, each by an atomic rename."""
    layout.replace_link(PREVIOUS, layout.make_temp_link(PREVIOUS, previous))
    checkpoint(f"{prefix}previous_linked")
    tmp = layout.make_temp_link(CURRENT, current)
    checkpoint(f"{prefix}current_tmp_link")
    layout.replace_link(CURRENT, tmp)
    checkpoint(f"{prefix}current_linked")


def _complete(layout: DeviceLayout, version: str | None) -> bool:
    return version is None or (layout.models_dir / version / SUMS).is_file()


def undo(layout: DeviceLayout, journal: dict) -> list[str]:
    """Undo an uncommitted operation described by ``journal``; returns what was done."""
    actions: list[str] = []
    if journal.get("phase") == "switching":
        old_cur, old_prev = journal.get("old_current"), journal.get("old_previous")
        if (layout.current(), layout.previous()) != (old_cur, old_prev):
            if _complete(layout, old_cur) and _complete(layout, old_prev):
                switch_links(layout, old_cur, old_prev, "restore_")
                actions.append(f"links restored: current={old_cur} previous={old_prev}")
            else:
                logger.error("cannot restore links to %s/%s: version directory incomplete", old_cur, old_prev)
    if journal.get("op") == "flash" and journal.get("created") and journal.get("version"):
        version = journal["version"]
        if version not in (layout.current(), layout.previous()) and (layout.models_dir / version).exists():
            layout.remove_tree(layout.models_dir / version)
            actions.append(f"removed uncommitted version {version}")
    return actions


def recover(layout: DeviceLayout, restart: bool = False) -> list[str]:
    """Finish or undo an interrupted operation and remove leftovers. Call with the lock held.

    Returns:
        What was done (empty when there was nothing to do).
    """
    actions: list[str] = []
    journal = layout.read_journal()
    before = (layout.current(), layout.previous())
    if journal is not None:
        if journal.get("phase") != "committed":
            actions += undo(layout, journal)
        layout.clear_journal()
        actions.append(f"interrupted {journal.get('op')} of {journal.get('version', '-')} "
                       f"(phase {journal.get('phase')}) cleaned up")
    for path in layout.leftovers():
        layout.remove_tree(path)
        actions.append(f"removed leftover {path.name}")
    for path in layout.deploy_dir.glob(f".{layout.journal_path.name}.*.tmp"):
        path.unlink()
    if actions:
        logger.warning("recovered: %s", "; ".join(actions))
        layout.append_history({"op": "recover", "actions": actions})
        if restart and (layout.current(), layout.previous()) != before and systemd_runs_edge(layout.is_live_root):
            with contextlib.suppress(BundleError):
                restart_edge()
    return actions


def check_health(layout: DeviceLayout, opts: FlashOptions, versions: Sequence[str]) -> dict | None:
    """Restart the edge if systemd runs it, then wait for a heartbeat when there is one to wait for.

    Returns:
        The heartbeat JSON, or None when no heartbeat was expected.

    Raises:
        BundleError: the restart failed or no heartbeat came in time.
    """
    settings = read_device_settings(layout.config_path)
    restarted = False
    if opts.restart and systemd_runs_edge(layout.is_live_root):
        restart_edge()
        restarted = True
    endpoint = opts.heartbeat_endpoint or (settings.endpoint if restarted else None)
    if endpoint is None:
        if restarted:
            raise BundleError(f"{layout.config_path}: no publish.endpoint to hear the edge's heartbeat on; "
                              "pass --heartbeat-endpoint")
        logger.info("edge not restarted (not run by systemd here, or --no-restart): no heartbeat to wait for")
        return None
    keys = heartbeat_keys(layout.server_public_path, layout.deploy_key_path) if settings.curve else None
    return wait_for_heartbeat(endpoint, settings.device, opts.heartbeat_timeout, versions, keys=keys)


def _version_policy(layout: DeviceLayout, vb, opts: FlashOptions) -> str | None:
    """Refuse downgrades and reused versions; returns "already-current" for a repeated flash."""
    current = layout.current()
    if current is None:
        return None
    if vb.semver == SemVer.parse(current):
        installed = layout.models_dir / current / SUMS
        if installed.is_file() and installed.read_bytes() == vb.control[SUMS]:
            return "already-current"
        raise BundleError(f"version {vb.version} is already installed with different content; "
                          "give the new bundle a new version")
    if vb.semver < SemVer.parse(current) and not opts.allow_downgrade:
        raise BundleError(f"refusing to downgrade from {current} to {vb.version} "
                          "(use --allow-downgrade, or 'gemsight-deploy rollback')")
    return None


def _check_space(layout: DeviceLayout, vb, opts: FlashOptions) -> None:
    need = vb.payload_bytes + sum(len(v) for v in vb.control.values()) + opts.reserve_bytes
    free = shutil.disk_usage(layout.models_dir).free
    if free < need:
        raise BundleError(f"not enough free space in {layout.models_dir}: {free / 1e6:.0f} MB free, "
                          f"{need / 1e6:.0f} MB needed (bundle {vb.payload_bytes / 1e6:.0f} MB + reserve)")


def _existing_dir(layout: DeviceLayout, vb) -> bool:
    """Deal with a directory of the bundle's version that is not current; True to reuse it."""
    vdir = layout.version_dir(vb.version)
    if not vdir.exists():
        return False
    same = (vdir / SUMS).is_file() and (vdir / SUMS).read_bytes() == vb.control[SUMS]
    if same:
        from deploy.verify import verify_installed  # noqa: PLC0415
        with contextlib.suppress(BundleError):
            verify_installed(vdir)
            logger.info("%s is already installed and intact: reusing it", vdir)
            return True
    if vb.version == layout.previous():
        raise BundleError(f"version {vb.version} is installed as 'previous' with different content; refusing")
    logger.warning("%s: stale or different install of %s, replacing it", vdir, vb.version)
    layout.remove_tree(vdir)
    return False


def flash(bundle: str | Path, root: str | Path = "/", options: FlashOptions | None = None) -> FlashResult:
    """Install a bundle on the device root and make it current (see the module docstring for the order).

    Raises:
        BundleError: refused (bad bundle, untrusted key, downgrade, no space, another flash running)
            or failed (engine, smoke test, no heartbeat); the device is left on its previous version.
    """
    opts = options or FlashOptions()
    layout = DeviceLayout(root)
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    with layout.locked():
        checkpoint("locked")
        recover(layout, restart=opts.restart)
        checkpoint("recovered")
        with _timed(timings, "verify"):
            keys = trusted_keys(opts.pubkeys, opts.pubkey_dir if opts.pubkey_dir is not None else layout.keys_dir)
            vb = verify_bundle(bundle, keys)
        checkpoint("verified")
        current, previous = layout.current(), layout.previous()
        if _version_policy(layout, vb, opts) == "already-current":
            logger.info("version %s is already current: nothing to do", vb.version)
            return FlashResult(vb.version, current, "already-current", vb.key_id, timings)
        _check_space(layout, vb, opts)
        settings = read_device_settings(layout.config_path)
        reuse = _existing_dir(layout, vb)
        vdir = layout.version_dir(vb.version)
        tmp = layout.temp_path(f"tmp-{vb.version}")
        journal = {"op": "flash", "phase": "installing", "version": vb.version, "bundle": str(bundle),
                   "created": not reuse, "old_current": current, "old_previous": previous, "pid": os.getpid()}
        layout.write_journal(journal)
        checkpoint("journal_written")
        result = FlashResult(vb.version, current, "installed", vb.key_id, timings)
        try:
            workdir = vdir
            if not reuse:
                with _timed(timings, "unpack"):
                    tmp.mkdir(mode=0o755)
                    checkpoint("tmpdir_created")
                    extract_verified(vb, tmp, on_file=_once(lambda: checkpoint("unpacked_one")))
                    checkpoint("unpacked")
                workdir = tmp
            target = engine_target(layout, settings, opts.max_batch, opts.precision)
            with _timed(timings, "engine"):
                engine = ensure_engine_for(workdir, target)
                result.engine = str(engine) if engine else None
            checkpoint("engine_ready")
            with _timed(timings, "smoke"):
                # The smoke test opens the engine just built: same cache directory, max batch and options.
                result.smoke = smoke_test(workdir, opts.runtime, opts.precision, layout.config_path, target=target)
            checkpoint("smoke_passed")
            with _timed(timings, "switch"):
                if not reuse:
                    os.rename(tmp, vdir)
                    fsync_dir(layout.models_dir)
                    checkpoint("renamed")
                layout.write_journal({**journal, "phase": "switching"})
                checkpoint("journal_switching")
                switch_links(layout, vb.version, current if current != vb.version else previous)
                checkpoint("switched")
            with _timed(timings, "health"):
                model_versions = (vb.version, vb.manifest.version)
                result.heartbeat = check_health(layout, opts, model_versions)
            checkpoint("healthy")
        except BaseException as exc:
            # Anything short of SIGKILL: undo now, exactly as the next run would.
            actions = undo(layout, {**journal, "phase": "switching"})
            layout.remove_tree(tmp)
            layout.clear_journal()
            layout.append_history({"op": "flash", "version": vb.version, "result": "failed",
                                   "error": str(exc), "actions": actions})
            if actions and opts.restart and systemd_runs_edge(layout.is_live_root):
                with contextlib.suppress(BundleError):
                    restart_edge()
            if isinstance(exc, BundleError) and actions:
                raise BundleError(f"{exc}; switched back to {current or 'no model'}") from exc
            raise
        layout.write_journal({**journal, "phase": "committed"})
        checkpoint("committed")
        prune(layout, opts.keep)
        checkpoint("pruned")
        timings["total"] = time.perf_counter() - t_start
        layout.append_history({"op": "flash", "version": vb.version, "from": current, "result": "ok",
                               "key_id": vb.key_id, "timings": {k: round(v, 3) for k, v in timings.items()}})
        layout.clear_journal()
        checkpoint("done")
    logger.info("flashed %s (was %s) in %.2fs", vb.version, current or "nothing", timings["total"])
    return result


def engine_target(layout: DeviceLayout, settings, max_batch: int | None = None, precision: str | None = None,
                  cache_dir: str | Path | None = None) -> EngineTarget:
    """The one TensorRT engine target of a device: edge.yaml's tensorrt options (max batch: every slot
    of every camera unless set), command-line overrides, and the cache under the device root."""
    return EngineTarget(Path(cache_dir) if cache_dir else layout.engine_cache(settings.engine_cache),
                        int(max_batch or settings.max_batch), precision or settings.precision, settings.build,
                        settings.device_index)


def _once(func):
    done = []

    def call(_name: str) -> None:
        if not done:
            done.append(True)
            func()
    return call


def prune(layout: DeviceLayout, keep: int) -> list[str]:
    """Remove the oldest installed versions beyond ``keep``; never ``current`` or ``previous``."""
    keep = max(keep, 2)
    protected = {layout.current(), layout.previous()}
    installed = layout.installed()
    removed = []
    for version in installed:
        if len(installed) - len(removed) <= keep:
            break
        if version not in protected:
            layout.remove_tree(layout.models_dir / version)
            removed.append(version)
    if removed:
        logger.info("pruned old versions: %s", ", ".join(removed))
    return removed
