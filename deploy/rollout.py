"""Rolling a bundle out over a fleet in waves: the canary first, a halt at the first failure, resumable.

    gemsight-deploy rollout BUNDLE --inventory devices.yaml --waves 1,10%,50%,100% [--resume]

* **Inventory** (``devices.yaml``): ``devices:``, each an ``id``, its device ``root`` (a local
  folder: ``/`` on the device itself, or where a technician's machine mounts it; relative to the
  inventory) and optionally the ``heartbeat`` endpoint its edge publishes on.
* **Waves** are cumulative sizes over the inventory's order: ``1,10%,50%,100%`` of 20 devices flashes
  device 1 (the canary), then up to 2, then up to 10, then all 20. The last wave must be 100%.
* **Each device** is flashed with :func:`deploy.flash.flash` (verify, unpack, engine, smoke inference
  with the device's own ``edge.yaml``, switch, heartbeat): a failed flash leaves it on its old version.
* **Healthy**, before the next wave, means for every device of the wave: ``current`` is the bundle's
  version, that version's files still match its ``SHA256SUMS``, no operation is half done (journal),
  and, where the inventory names a ``heartbeat`` endpoint, a heartbeat of that device naming the new
  version arrives within ``--heartbeat-timeout``. A device that fails this is rolled back
  (:func:`deploy.manage.rollback`).
* **Halt**: at the first failure nothing more is flashed: later devices and waves stay untouched.
* **Resumable**: the state (every device's outcome) is kept in a JSON file beside the inventory
  (``--state``), written after every device. ``--resume`` continues: devices already on the
  bundle's version are skipped; with a fixed bundle (a new version) every device gets it, in the
  same waves, canary first.
* **Report**: one line per device (``--json``: the state as JSON).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from deploy.flash import FlashOptions, flash
from deploy.health import wait_for_heartbeat
from deploy.keys import trusted_keys
from deploy.layout import DeviceLayout
from deploy.manage import rollback
from deploy.verify import verify_bundle, verify_installed
from edge.contracts import ID_PATTERN
from edge.errors import BundleError, ConfigError, GemsightError
from edge.validation import error_lines, Strict

logger = logging.getLogger(__name__)

PENDING, DONE, FAILED, ROLLED_BACK = "pending", "done", "failed", "rolled back"


class InventoryDevice(Strict):
    """One device of the fleet."""

    id: str = Field(pattern=ID_PATTERN, description="Device id (as in its edge.yaml).")
    root: Path = Field(description="Its device root (a local folder), relative to the inventory.")
    heartbeat: str | None = Field(None, description="ZeroMQ endpoint its edge publishes heartbeats on.")


class Inventory(Strict):
    """``devices.yaml``."""

    devices: tuple[InventoryDevice, ...] = Field(min_length=1, description="The fleet, canary first.")


def load_inventory(path: str | Path) -> Inventory:
    """Read ``devices.yaml`` (roots resolved against its folder).

    Raises:
        ConfigError: missing, not YAML, invalid (every field named) or a device id repeated.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: inventory not found") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the inventory ({' '.join(str(exc).split())})") from None
    try:
        inv = Inventory.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(error_lines(exc, str(path))) from exc
    ids = [d.id for d in inv.devices]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ConfigError(f"{path}: devices: ids repeat: {dupes}")
    return Inventory(devices=tuple(
        d.model_copy(update={"root": d.root if d.root.is_absolute() else path.parent / d.root}) for d in inv.devices))


def parse_waves(text: str, n: int) -> list[int]:
    """Cumulative wave sizes over ``n`` devices (``"1,10%,50%,100%"``, 20 → ``[1, 2, 10, 20]``).

    Raises:
        ConfigError: a size that is not a positive count or percentage, sizes that shrink, or a last
            wave short of every device.
    """
    sizes: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            size = math.ceil(float(part[:-1]) * n / 100) if part.endswith("%") else int(part)
        except ValueError:
            raise ConfigError(f"--waves: {part!r} is not a device count or a percentage like 10%") from None
        if size <= 0 or (part.endswith("%") and float(part[:-1]) > 100):
            raise ConfigError(f"--waves: {part!r} must be a count of at least 1 or a percentage up to 100%")
        if sizes and size < sizes[-1]:
            raise ConfigError(f"--waves: {part!r} ({size} devices) is smaller than the wave before ({sizes[-1]})")
        if not sizes or size > sizes[-1]:
            sizes.append(min(size, n))
    if not sizes or sizes[-1] < n:
        raise ConfigError(f"--waves: the last wave reaches {sizes[-1] if sizes else 0} of {n} devices; end with 100%")
    return sizes


def _write_state(path: Path, state: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    os.replace(tmp, path)


def healthy(device: InventoryDevice, version: str, model_version: str, timeout: float) -> None:
    """Raise :class:`BundleError` unless ``device`` runs ``version`` intact (and beats, with an endpoint)."""
    layout = DeviceLayout(device.root)
    if layout.read_journal() is not None:
        raise BundleError(f"{device.id}: an operation is half done (journal present)")
    if layout.current() != version:
        raise BundleError(f"{device.id}: current is {layout.current()}, not {version}")
    verify_installed(layout.models_dir / version)
    if device.heartbeat:
        wait_for_heartbeat(device.heartbeat, device.id, timeout, (version, model_version))


class Rollout:
    """One rollout of ``bundle`` over ``inventory`` (see the module docstring)."""

    def __init__(self, bundle: str | Path, inventory: str | Path, waves: str, state_path: str | Path | None = None,
                 options: FlashOptions | None = None, heartbeat_timeout: float = 60.0) -> None:
        self.bundle, self.inventory_path = Path(bundle), Path(inventory)
        self.inventory = load_inventory(inventory)
        self.waves = parse_waves(waves, len(self.inventory.devices))
        self.wave_text = waves
        self.state_path = Path(state_path) if state_path else self.inventory_path.with_suffix(".rollout.json")
        self.options = options or FlashOptions()
        self.heartbeat_timeout = heartbeat_timeout

    def _version(self) -> tuple[str, str]:
        first = DeviceLayout(self.inventory.devices[0].root)
        keys = trusted_keys(self.options.pubkeys, self.options.pubkey_dir or first.keys_dir)
        vb = verify_bundle(self.bundle, keys)
        return vb.version, vb.manifest.version

    def _new_state(self, version: str) -> dict:
        return {"bundle": str(self.bundle), "version": version, "waves": self.wave_text, "started": time.time(),
                "halted": None, "finished": False,
                "devices": {d.id: {"status": PENDING, "wave": None, "from": DeviceLayout(d.root).current(),
                                   "now": DeviceLayout(d.root).current(), "error": None, "seconds": None}
                            for d in self.inventory.devices}}

    def run(self, resume: bool = False) -> dict:
        """Flash wave after wave; returns the state (``halted`` names the failure, if any).

        Raises:
            ConfigError: a state file exists and ``resume`` is False, or none exists to resume.
            BundleError: the bundle itself does not verify.
        """
        if self.state_path.exists() and not resume:
            raise ConfigError(f"{self.state_path}: a rollout was started here; pass --resume to continue it "
                              "(or remove the file to start over)")
        if resume and not self.state_path.exists():
            raise ConfigError(f"{self.state_path}: no rollout to resume")
        version, model_version = self._version()
        if resume:
            state = json.loads(self.state_path.read_text())
            if state["version"] != version:
                logger.info("resuming with %s (was %s): every device gets the new version", version, state["version"])
            state.update(bundle=str(self.bundle), version=version, halted=None, finished=False)
        else:
            state = self._new_state(version)
        _write_state(self.state_path, state)
        start = 0
        for wave, end in enumerate(self.waves, 1):
            group = self.inventory.devices[start:end]
            start = end
            logger.info("wave %d: %d devices (%s)", wave, len(group), ", ".join(d.id for d in group))
            for device in group:
                if not self._flash_one(device, wave, version, state):
                    return state
            for device in group:
                if not self._check_one(device, version, model_version, state):
                    return state
        state["finished"] = True
        _write_state(self.state_path, state)
        logger.info("rollout of %s finished: %d devices", version, len(self.inventory.devices))
        return state

    def _flash_one(self, device: InventoryDevice, wave: int, version: str, state: dict) -> bool:
        entry = state["devices"].setdefault(device.id, {"from": None})
        layout = DeviceLayout(device.root)
        entry.update(wave=wave, error=None)
        if layout.current() == version:
            entry.update(status=DONE, now=version)
            _write_state(self.state_path, state)
            return True
        entry["from"] = layout.current()
        t0 = time.perf_counter()
        opts = dataclasses.replace(self.options, heartbeat_endpoint=device.heartbeat or self.options.heartbeat_endpoint)
        try:
            flash(self.bundle, device.root, opts)
            entry.update(status=DONE)
        except GemsightError as exc:
            entry.update(status=FAILED, error=" ".join(str(exc).split()))
            state["halted"] = {"wave": wave, "device": device.id, "error": entry["error"]}
            logger.error("rollout halted in wave %d: %s failed: %s", wave, device.id, entry["error"])
        entry.update(now=layout.current(), seconds=round(time.perf_counter() - t0, 3))
        _write_state(self.state_path, state)
        return entry["status"] == DONE

    def _check_one(self, device: InventoryDevice, version: str, model_version: str, state: dict) -> bool:
        entry = state["devices"][device.id]
        try:
            healthy(device, version, model_version, self.heartbeat_timeout)
            return True
        except GemsightError as exc:
            error = " ".join(str(exc).split())
            try:
                rollback(device.root, dataclasses.replace(self.options, heartbeat_endpoint=device.heartbeat))
                entry.update(status=ROLLED_BACK)
            except GemsightError as exc2:
                error += f"; rollback failed too: {' '.join(str(exc2).split())}"
                entry.update(status=FAILED)
            entry.update(error=f"unhealthy after the wave: {error}", now=DeviceLayout(device.root).current())
            state["halted"] = {"wave": entry["wave"], "device": device.id, "error": entry["error"]}
            logger.error("rollout halted: %s unhealthy: %s", device.id, error)
            _write_state(self.state_path, state)
            return False


def report(state: dict) -> str:
    """One line per device, then the outcome."""
    lines = [f"rollout of {state['version']} ({state['bundle']}), waves {state['waves']}"]
    for dev, e in state["devices"].items():
        wave = f"wave {e['wave']}" if e.get("wave") else "-"
        what = e["status"] if e["status"] != PENDING else "untouched"
        lines.append(f"  {dev:<20} {wave:<7} {e.get('from') or '-':>10} -> {e.get('now') or '-':<10} {what}"
                     + (f" ({e['seconds']:.1f} s)" if e.get("seconds") else "") + (f": {e['error']}" if e.get("error")
                                                                                      else ""))
    if state["halted"]:
        h = state["halted"]
        lines.append(f"HALTED in wave {h['wave']} at {h['device']}: {h['error']}")
        lines.append("fix the bundle or the device, then run the same command with --resume")
    elif state["finished"]:
        lines.append(f"finished: every device runs {state['version']}")
    return "\n".join(lines)


def run_cli(args: Any) -> int:
    """``gemsight-deploy rollout``: prints the report; 0 when finished, 1 when halted."""
    opts = FlashOptions(pubkeys=args.pubkey, pubkey_dir=args.pubkey_dir, restart=not args.no_restart,
                        heartbeat_endpoint=args.heartbeat_endpoint, heartbeat_timeout=args.heartbeat_timeout)
    r = Rollout(args.bundle, args.inventory, args.waves, args.state, opts, args.heartbeat_timeout)
    state = r.run(resume=args.resume)
    print(json.dumps(state, indent=2, sort_keys=True) if args.json else report(state))
    return 1 if state["halted"] else 0


def add_parser(sub: Any, add_keys: Any, add_health: Any) -> None:
    """The ``rollout`` subcommand of ``gemsight-deploy``."""
    p = sub.add_parser("rollout", help="flash a bundle over a fleet in waves (canary first, halts at a failure)")
    p.add_argument("bundle", type=Path)
    p.add_argument("--inventory", type=Path, required=True, help="devices.yaml: devices with id, root, heartbeat")
    p.add_argument("--waves", default="1,10%,50%,100%", help="cumulative wave sizes, counts or percentages "
                                                             "(default 1,10%%,50%%,100%%)")
    p.add_argument("--resume", action="store_true", help="continue the rollout recorded in the state file")
    p.add_argument("--state", type=Path, default=None, help="state file (default: INVENTORY.rollout.json)")
    add_keys(p)
    add_health(p)
    p.add_argument("--json", action="store_true", help="print the per-device report as JSON")
