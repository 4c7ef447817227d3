"""Incidents and the changes the engine reports: small data types shared by engine, service and web."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: Incident kinds, and what each means for a person.
KINDS = {
    "missing": "expected piece missing",
    "wrong": "wrong piece in slot",
    "swapped": "another piece in slot",
    "smash": "several slots emptied at once",
    "camera": "camera down or stale",
    "model": "device model changed",
}
SLOT_KINDS = ("missing", "wrong", "swapped")
OPEN, ACKNOWLEDGED, RESOLVED = "open", "acknowledged", "resolved"


def incident_key(kind: str, device: str, camera: str | None, slot: str | None) -> tuple:
    """The key that keeps one incident per slot (missing/wrong/swapped share it), per case or per camera."""
    if kind in SLOT_KINDS:
        return ("slot", device, camera, slot)
    return (kind, device, camera)


@dataclass
class Incident:
    """One problem, updated in place while it lasts; ``id`` is set once the history has stored it."""

    kind: str
    device: str
    camera: str | None
    slot: str | None
    opened_at: float
    updated_at: float
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)
    state: str = OPEN
    resolved_at: float | None = None
    ack_by: str | None = None
    ack_at: float | None = None
    ack_note: str | None = None
    id: int | None = None

    @property
    def key(self) -> tuple:
        return incident_key(self.kind, self.device, self.camera, self.slot)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the API's and the history's form), with ``title`` for people."""
        d = asdict(self)
        d["title"] = KINDS.get(self.kind, self.kind)
        return d

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Incident":
        """Rebuild from a history row."""
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in row.items() if k in names})


@dataclass
class Changes:
    """What one input changed: slot cells, camera health, incidents (with their event), history rows."""

    slots: list[dict[str, Any]] = field(default_factory=list)
    cameras: list[dict[str, Any]] = field(default_factory=list)
    incidents: list[tuple[str, Incident]] = field(default_factory=list)   # (opened|updated|acknowledged|resolved, it)
    slot_rows: list[tuple] = field(default_factory=list)                   # history.add_slot_changes rows

    def extend(self, other: "Changes") -> "Changes":
        self.slots += other.slots
        self.cameras += other.cameras
        self.incidents += other.incidents
        self.slot_rows += other.slot_rows
        return self

    def __bool__(self) -> bool:
        return bool(self.slots or self.cameras or self.incidents or self.slot_rows)
