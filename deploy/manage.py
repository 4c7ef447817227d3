"""``rollback``, ``status`` and ``build-engine``: the device-side commands besides flashing."""
from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path

from deploy.engine import ensure_engine_for
from deploy.flash import FlashOptions, check_health, checkpoint, engine_target, recover, switch_links, undo
from deploy.health import read_device_settings, restart_edge, systemd_runs_edge
from deploy.keys import trusted_keys
from deploy.layout import DeviceLayout
from deploy.verify import verify_installed
from edge.errors import BundleError, GemsightError

logger = logging.getLogger(__name__)


def _keys_or_none(layout: DeviceLayout, opts: FlashOptions):
    try:
        return trusted_keys(opts.pubkeys, opts.pubkey_dir if opts.pubkey_dir is not None else layout.keys_dir)
    except BundleError:
        return None


def rollback(root: str | Path = "/", options: FlashOptions | None = None) -> dict:
    """Make ``previous`` current again (and the current one ``previous``), with the same safety as flash.

    The previous version is checked (every file against its ``SHA256SUMS``, the signature too when
    the device has trusted keys) before the switch; the edge is restarted and its heartbeat awaited
    as for a flash, and no heartbeat switches back.

    Returns:
        ``{"current": ..., "previous": ..., "heartbeat": ...}`` after the rollback.

    Raises:
        BundleError: nothing to roll back to, the previous version is damaged, or no heartbeat.
    """
    opts = options or FlashOptions()
    layout = DeviceLayout(root)
    with layout.locked():
        recover(layout, restart=opts.restart)
        current, previous = layout.current(), layout.previous()
        if previous is None:
            raise BundleError(f"{layout.models_dir}: no previous version to roll back to")
        keys = _keys_or_none(layout, opts)
        verify_installed(layout.models_dir / previous, keys)
        journal = {"op": "rollback", "phase": "switching", "version": previous,
                   "old_current": current, "old_previous": previous, "pid": os.getpid()}
        layout.write_journal(journal)
        checkpoint("rollback_journal")
        try:
            switch_links(layout, previous, current, "rollback_")
            checkpoint("rollback_switched")
            heartbeat = check_health(layout, opts, (previous,))
        except BaseException as exc:
            actions = undo(layout, journal)
            layout.clear_journal()
            layout.append_history({"op": "rollback", "version": previous, "result": "failed", "error": str(exc)})
            if actions and opts.restart and systemd_runs_edge(layout.is_live_root):
                with contextlib.suppress(BundleError):
                    restart_edge()
            raise
        layout.append_history({"op": "rollback", "version": previous, "from": current, "result": "ok"})
        layout.clear_journal()
    logger.info("rolled back from %s to %s", current, previous)
    return {"current": previous, "previous": current, "heartbeat": heartbeat}


def _version_info(layout: DeviceLayout, version: str, keys, full: bool) -> dict:
    vdir = layout.models_dir / version
    info: dict = {"version": version, "path": str(vdir)}
    try:
        meta = verify_installed(vdir, keys, check_digests=full)
        info.update(complete=True, created=meta.get("created"), signer=meta.get("signer"),
                    model=meta.get("model", {}).get("name"), model_version=meta.get("model", {}).get("version"),
                    model_digest=meta.get("model_digest"))
    except BundleError as exc:
        info.update(complete=False, problem=str(exc))
    info["bytes"] = sum(p.stat().st_size for p in vdir.rglob("*") if p.is_file())
    return info


def status(root: str | Path = "/", verify: bool = False, pubkeys=(), pubkey_dir=None) -> dict:
    """What is installed on a device root; cleans up after an interrupted operation first.

    Args:
        root: the device root.
        verify: re-hash every file of every installed version (else only check the file lists).
        pubkeys, pubkey_dir: keys to check the stored signatures with (default: the device's).

    Returns:
        ``{"root", "current", "previous", "installed": [...], "engines": [...], "busy", "recovered",
        "history"}``.
    """
    layout = DeviceLayout(root)
    recovered: list[str] = []
    busy = None
    if layout.deploy_dir.is_dir():
        try:
            with layout.locked():
                recovered = recover(layout)
        except BundleError as exc:  # another operation holds the lock: report, touch nothing
            busy = str(exc)
    keys = _keys_or_none(layout, FlashOptions(pubkeys=pubkeys, pubkey_dir=pubkey_dir))
    from edge.runtimes.engine_cache import list_entries  # noqa: PLC0415

    cache = layout.engine_cache(read_device_settings(layout.config_path).engine_cache)
    engines = [{"name": e.path.parent.name, "bytes": e.path.stat().st_size, "precision": e.built_precision,
                "max_batch": e.max_batch, "built_for": _built_for(e.sidecar.get("key") or {}),
                "modified": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(e.path.stat().st_mtime))}
               for e in list_entries(cache)]
    return {
        "root": str(layout.root),
        "current": layout.current(),
        "previous": layout.previous(),
        "installed": [_version_info(layout, v, keys, verify) for v in layout.installed()],
        "signatures_checked": keys is not None,
        "engines": engines,
        "busy": busy,
        "recovered": recovered,
        "history": layout.history(5),
    }


def _built_for(key: dict) -> str:
    """What an engine was built for, for people: TensorRT, CUDA, L4T/driver, GPU or DLA core."""
    device = "gpu" if key.get("dla_core") is None else f"DLA core {key['dla_core']}"
    return (f"TensorRT {key.get('trt_version', '?')}, CUDA {key.get('cuda_driver', '?')}, {key.get('system', '?')}, "
            f"{key.get('gpu_name', '?')} ({device})")


def build_engine(root: str | Path = "/", max_batch: int | None = None, precision: str | None = None,
                 model_dir: str | Path | None = None, cache_dir: str | Path | None = None,
                 rebuild: bool = False) -> Path | None:
    """Build (or find in the cache) the TensorRT engine of the current model; run at boot by
    ``gemsight-engine.service``. An interrupted flash is recovered first, so the edge never starts
    on an uncommitted switch. A cached engine is deserialized once; a stale one is rebuilt.

    Args:
        root: device root.
        max_batch, precision: default from the device config (``runtime.options.tensorrt.max_batch``,
            else every slot of every camera; ``model.precision``), as the edge will look the engine up.
        model_dir: build for this model directory instead of the current version.
        cache_dir: engine cache (default ``$GEMSIGHT_ENGINE_CACHE``, else the config's
            ``engine_cache``, else ``<root>/var/lib/gemsight/engines``).
        rebuild: build even when a cached engine loads (``--rebuild``).

    Returns:
        The engine path, or ``None`` where TensorRT is absent or no model is installed.

    Raises:
        BundleError: the current version is damaged or the build failed.
    """
    from edge.runtimes.engine_cache import ENV_CACHE_DIR  # noqa: PLC0415

    layout = DeviceLayout(root)
    settings = read_device_settings(layout.config_path)
    if model_dir is None:
        if layout.deploy_dir.is_dir():
            with layout.locked():
                recover(layout)
        current = layout.current()
        if current is None:
            logger.warning("%s: no current model installed; nothing to build", layout.models_dir)
            return None
        model_dir = layout.models_dir / current
        verify_installed(model_dir, check_digests=False)
    target = engine_target(layout, settings, max_batch, precision, cache_dir or os.environ.get(ENV_CACHE_DIR))
    try:
        return ensure_engine_for(model_dir, target, rebuild=rebuild)
    except GemsightError as exc:
        raise BundleError(f"engine build for {model_dir} failed: {exc}") from exc
