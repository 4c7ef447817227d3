"""The kiosk config (``kiosk.yaml``): the store, its devices and their planogram, policies, hours, web.

Validated by strict pydantic models (``extra="forbid"``); a bad config gives a
:class:`~edge.errors.ConfigError` with one line per problem naming the file and the field path, as the
device config does (:mod:`edge.validation`). Key files follow :mod:`edge.config.credentials` (a bare name
is read from ``$CREDENTIALS_DIRECTORY``; a path with a ``/`` is relative to the config file).

The planogram lives under each device's cameras: every slot names the class it should hold, or a
state (:data:`STATES`) saying why it is empty on purpose. A manager can change a slot from the page;
those edits are kept in the kiosk's history database and override the file (:mod:`kiosk.history`).
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import re
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator, model_validator

from edge.config.credentials import is_name as is_credential_name
from edge.config.yaml_files import load_yaml
from edge.contracts import ID_PATTERN
from edge.errors import ConfigError
from edge.validation import Strict, error_lines
from kiosk.chain import ChainConfig
from kiosk.config_web import WebConfig, WebhookConfig, check_hhmm

__all__ = ["KioskConfig", "WebConfig", "WebhookConfig", "load_config", "parse_config"]

logger = logging.getLogger(__name__)

#: Planogram states: the slot is empty on purpose (never a missing-item incident).
STATES: tuple[str, ...] = ("sold", "repair", "out for showing", "empty by design")
#: Labels meaning "no piece seen here".
EMPTY_LABELS: tuple[str, ...] = ("empty", "unknown")
DAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_CONFIG_BYTES = 4 << 20   # a store of hundreds of cases is well under 1 MB; refuse before parsing
_CLASS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")


def check_expected(value: str) -> str:
    """Return a planogram value (a class name or one of :data:`STATES`), or raise ``ValueError``."""
    if not isinstance(value, str) or not (value in STATES or _CLASS.match(value)) or value in EMPTY_LABELS:
        raise ValueError(f"planogram value {value!r} must be a class name (e.g. ring) or one of {list(STATES)}")
    return value


class CameraPlan(Strict):
    """One case (a camera of a device) and its slots: slot name -> expected class or state."""

    title: str | None = Field(None, max_length=80, description="Name shown on the page (default device/camera).")
    columns: int | None = Field(None, ge=1, le=64, description="Grid columns (default: from rNcM slot names, else 4).")
    slots: dict[str, str] = Field(description="Slot name -> the class it should hold, or a state "
                                              "(sold, repair, out for showing, empty by design).")
    empty_grace_s: float | None = Field(None, ge=0, description="Override of policies.empty_grace_s for this case.")
    burst_slots: int | None = Field(None, ge=1, description="Override of policies.burst_slots for this case.")

    @field_validator("slots")
    @classmethod
    def _slots_ok(cls, v: dict[str, str]) -> dict[str, str]:
        if not v:
            raise ValueError("a case needs at least one slot")
        for name, expected in v.items():
            if not re.match(ID_PATTERN, name):
                raise ValueError(f"slot name {name!r} is not a valid id (letters, digits, ._-)")
            try:
                check_expected(expected)
            except ValueError as exc:
                raise ValueError(f"slot {name}: {exc}") from None
        return v


class DeviceEntry(Strict):
    """One device of the store: where it publishes, and how to trust it."""

    id: str = Field(pattern=ID_PATTERN, description="Device id (as in its edge.yaml).")
    labels: str = Field(description="The device's PUB endpoint, e.g. tcp://case-01.local:5555.")
    snapshot: str | None = Field(None, description="The device's snapshot REP endpoint, e.g. tcp://case-01.local:5556.")
    server_key: str | None = Field(None, description="The device's public CURVE certificate (pinned); required "
                                                     "unless the kiosk's `curve` is null.")
    cameras: dict[str, CameraPlan] = Field(description="Camera id -> its case and planogram.")

    @field_validator("labels", "snapshot")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^(tcp://(\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):\d{1,5}|(ipc|inproc)://\S+)$", v):
            raise ValueError(f"{v!r} is not a ZeroMQ endpoint like tcp://host:port")
        return v

    @field_validator("cameras")
    @classmethod
    def _camera_ids(cls, v: dict[str, CameraPlan]) -> dict[str, CameraPlan]:
        if not v:
            raise ValueError("a device needs at least one camera")
        bad = [c for c in v if not re.match(ID_PATTERN, c)]
        if bad:
            raise ValueError(f"camera ids {bad} are not valid ids")
        return v


class CurveConfig(Strict):
    """The kiosk's own CURVE key pair (a ``zmq.auth`` certificate with its secret key)."""

    client_secret_key: str = Field(description="The kiosk's client certificate with secret key (.key_secret); "
                                               "its public half goes into each device's allow-list.")


class Policies(Strict):
    """When a state becomes an incident."""

    empty_grace_s: float = Field(600.0, ge=0, description="How long an expected piece may be missing before "
                                                          "it is an incident (default 10 min).")
    burst_slots: int = Field(2, ge=1, description="Slots of one case that may go empty within burst_window_s "
                                                  "before an immediate smash-and-grab alarm.")
    burst_window_s: float = Field(10.0, gt=0, description="The window of burst_slots.")
    smash_hold_s: float = Field(2.0, ge=0, le=30, description="A slot (slot states) counts toward a smash-and-grab "
                                                             "while it reads empty, this long after it first did "
                                                             "since it left present: an arm resting across slots "
                                                             "reads empty for a moment. Delays the alarm by as much.")
    smash_slots_at_once: bool = Field(False, description="A smash-and-grab alarm also makes its emptied slots' "
                                                         "missing incidents open at once (no grace). Off: the case's "
                                                         "alarm is immediate and names them, and each slot keeps "
                                                         "its grace, so a piece out to be shown or sold at that "
                                                         "moment opens nothing.")
    heartbeat_s: float = Field(1.0, gt=0, description="The devices' heartbeat interval (publish.heartbeat_s).")
    stale_heartbeats: int = Field(3, ge=1, description="Missed heartbeats (or heartbeats with a frozen seq) "
                                                       "before a camera is stale.")
    snapshot_timeout_s: float = Field(2.0, gt=0, description="How long a snapshot request may take.")
    incidents: Literal["states", "categories"] = Field(
        "states", description="What slot incidents come from: the device's slot states (missing, swapped, "
                              "smash; docs/kiosk-states.md), or the category against the planogram (the old rule).")
    swap_confirm_s: float = Field(15.0, ge=0, description="How long a slot must read `changed` before a "
                                                          "swapped-piece incident (states): glare drifting over "
                                                          "a slot for ~12 s after a hand is not a swap.")
    category_incidents: bool = Field(False, description="With states: a category that differs from the planogram "
                                                        "is a 'wrong piece' incident again, not only a hint.")
    evidence_days: float = Field(90.0, gt=0, description="Days the incidents' evidence pictures are kept.")
    evidence_mb: float = Field(500.0, gt=0, description="Most megabytes of evidence pictures kept (oldest pruned).")
    enrol_timeout_s: float = Field(10.0, gt=0, description="How long an enrolment request to a device may take.")


class Hours(Strict):
    """Store hours: outside them every removal is an immediate alarm; counts run at open and close."""

    open: str = Field(description="Opening time HH:MM (store's time zone).")
    close: str = Field(description="Closing time HH:MM.")
    days: tuple[str, ...] = Field(DAYS[:6], description="Days open (mon..sun).")
    timezone: str = Field("UTC", description="IANA time zone, e.g. Europe/Zurich.")
    count_at_open: bool = Field(True, description="Run a count at opening time.")
    count_at_close: bool = Field(True, description="Run a count at closing time.")

    @field_validator("open", "close")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        return check_hhmm(v)

    @field_validator("days")
    @classmethod
    def _days(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [d for d in v if d not in DAYS]
        if bad:
            raise ValueError(f"unknown days {bad} (use {list(DAYS)})")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v

    @model_validator(mode="after")
    def _order(self) -> "Hours":
        if self.open >= self.close:
            raise ValueError(f"open {self.open} must be before close {self.close}")
        return self

    def is_open(self, ts: float) -> bool:
        """Whether the store is open at Unix time ``ts``."""
        local = dt.datetime.fromtimestamp(ts, ZoneInfo(self.timezone))
        return DAYS[local.weekday()] in self.days and self.open <= local.strftime("%H:%M") < self.close


class KioskConfig(Strict):
    """The whole ``kiosk.yaml``."""

    store: str = Field(min_length=1, max_length=80, description="Store name shown on the page.")
    state_dir: Path = Field(Path("/var/lib/gemsight/kiosk"), description="History database and session key.")
    curve: CurveConfig | None = Field(description="The kiosk's key pair; write `curve: null` for plaintext "
                                                  "(loopback devices only).")
    devices: tuple[DeviceEntry, ...] = Field(description="The store's devices.")
    policies: Policies = Field(default_factory=Policies, description="Incident policies.")
    hours: Hours | None = Field(None, description="Store hours (none: always open).")
    web: WebConfig = Field(default_factory=WebConfig, description="Web page and API.")
    webhook: WebhookConfig | None = Field(None, description="Optional webhook for incidents.")
    retention_days: int = Field(400, ge=1, description="Days of history kept (the audit log is never pruned).")
    chain: ChainConfig | None = Field(None, description="Optional: report to the chain's headquarters (MQTT).")

    @field_validator("devices")
    @classmethod
    def _unique(cls, v: tuple[DeviceEntry, ...]) -> tuple[DeviceEntry, ...]:
        if not v:
            raise ValueError("at least one device is needed")
        ids = [d.id for d in v]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"device ids repeat: {dupes}")
        return v

    def link_problems(self) -> list[str]:
        """``field: problem`` lines for devices the kiosk could not reach safely (CURVE rules)."""
        problems = []
        for i, d in enumerate(self.devices):
            if self.curve is not None and not d.server_key:
                problems.append(f"devices.{i}.server_key: required with CURVE (or write `curve: null` for "
                                "plaintext on loopback)")
            if self.curve is None:
                for name in ("labels", "snapshot"):
                    ep = getattr(d, name)
                    if ep and not is_loopback(ep):
                        problems.append(f"devices.{i}.{name}: plaintext (curve: null) is refused for the "
                                        f"non-loopback endpoint {ep}")
        return problems

    def device(self, device_id: str) -> DeviceEntry:
        """The entry of ``device_id`` (``KeyError`` if none)."""
        for d in self.devices:
            if d.id == device_id:
                return d
        raise KeyError(device_id)


def is_loopback(endpoint: str) -> bool:
    """True for ``ipc://``/``inproc://`` and tcp endpoints on 127.0.0.0/8, ::1 or localhost."""
    if not endpoint.startswith("tcp://"):
        return True
    host = endpoint[len("tcp://"):].rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _resolve(base: Path, ref: str | None) -> str | None:
    if ref is None or is_credential_name(ref):
        return ref
    p = Path(ref).expanduser()
    return str(p if p.is_absolute() else (base / p))


def _bad_strings(data: Any, where: str = "") -> list[str]:
    """``field: problem`` for every string (key or value) holding a NUL or a lone surrogate, which no
    path, database or web page can take, and every field name with control characters (which would
    break the one-line-per-problem message)."""
    out = []

    def check(text: str, at: str) -> None:
        if "\x00" in text:
            out.append(f"{at or TOP}: contains a NUL character")
        elif any(0xD800 <= ord(c) <= 0xDFFF for c in text):
            out.append(f"{at or TOP}: contains a lone surrogate (not valid Unicode text)")

    if isinstance(data, str):
        check(data, where)
    elif isinstance(data, dict):
        for k, v in data.items():
            if isinstance(k, str) and any(ord(c) < 32 or ord(c) == 127 for c in k):
                out.append(f"{where or TOP}: field name {k!r} holds control characters")
                continue
            at = f"{where}.{k}" if where else str(k)
            if isinstance(k, str):
                check(k, at)
            out += _bad_strings(v, at)
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _bad_strings(v, f"{where}.{i}" if where else str(i))
    return out


TOP = "(top level)"


def parse_config(data: Any, source: str = "kiosk.yaml", base_dir: str | Path = ".") -> KioskConfig:
    """Validate a parsed YAML document; key files and ``state_dir`` resolve against ``base_dir``.

    Raises:
        ConfigError: one line per problem, each naming ``source`` and the field path.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    bad = _bad_strings(data)
    if bad:
        raise ConfigError("\n".join(f"{source}: {line}" for line in bad))
    try:
        cfg = KioskConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(error_lines(exc, source)) from exc
    problems = cfg.link_problems()
    if problems:
        raise ConfigError("\n".join(f"{source}: {line}" for line in problems))
    base = Path(base_dir)
    devices = tuple(d.model_copy(update={"server_key": _resolve(base, d.server_key)}) for d in cfg.devices)
    curve = cfg.curve and cfg.curve.model_copy(
        update={"client_secret_key": _resolve(base, cfg.curve.client_secret_key)})
    state_dir = cfg.state_dir if cfg.state_dir.is_absolute() else base / cfg.state_dir
    web = cfg.web.model_copy(update={k: _resolve(base, getattr(cfg.web, k)) for k in ("tls_cert", "tls_key")})
    hook = cfg.webhook and cfg.webhook.model_copy(update={"secret": _resolve(base, cfg.webhook.secret)})
    chain = cfg.chain and cfg.chain.model_copy(update={"password_file": _resolve(base, cfg.chain.password_file),
                                                       "ca_file": _resolve(base, cfg.chain.ca_file)})
    return cfg.model_copy(update={"devices": devices, "curve": curve, "state_dir": state_dir, "web": web,
                                  "webhook": hook, "chain": chain})


def load_config(path: str | Path) -> KioskConfig:
    """Read and validate ``kiosk.yaml``.

    Raises:
        ConfigError: missing/unreadable/too large/not UTF-8/not YAML, or invalid (every field named).
    """
    path = Path(path)
    # The edge's bounded reader: size, encoding, nesting, aliases and duplicate keys (edge.config.yaml_files).
    data = load_yaml(path, "kiosk config", MAX_CONFIG_BYTES)
    return parse_config(data, str(path), path.parent)
