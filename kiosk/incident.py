"""Incidents and the changes the engine reports: small data types shared by engine, service and web."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from edge.contracts import StrEnum

#: Incident kinds, and what each means for a person.
KINDS = {
    "missing": "expected piece missing",
    "wrong": "wrong piece in slot",
    "swapped": "another piece in slot",
    "smash": "several slots emptied at once",
    "camera": "camera down or stale",
    "model": "device model changed",
}


class Cond(StrEnum):
    """A slot's condition on the page: what the planogram expects against what the camera sees (or, with
    slot states, what the device says of the slot). The slot kinds of incidents share their names."""

    OK = "ok"                  # the expected piece (or the expected empty/state)
    MISSING = "missing"        # the expected piece is not there
    WRONG = "wrong"            # another category than the planogram's (category incidents)
    SWAPPED = "swapped"        # another piece than the enrolled one (slot states)
    EXTRA = "extra"            # a piece where the planogram expects none
    STATE = "state"            # empty, as the planogram expects (a state such as "sold")
    UNPLANNED = "unplanned"    # the planogram says nothing of this slot
    NODATA = "nodata"          # no labels yet
    OCCLUDED = "occluded"      # a hand or motion: no decision until still (slot states)
    UNENROLLED = "unenrolled"  # the device has no reference for this slot (slot states)


SLOT_KINDS = (Cond.MISSING, Cond.WRONG, Cond.SWAPPED)
OPEN, ACKNOWLEDGED, RESOLVED = "open", "acknowledged", "resolved"


def incident_key(kind: str, device: str, camera: str | None, slot: str | None) -> tuple:
    """The key that keeps one incident per slot (missing/wrong/swapped share it), per case or per camera."""
    if kind in SLOT_KINDS:
        return slot_incident_key((device, camera, slot))
    return (kind, device, camera)


def slot_incident_key(slot: tuple[str, str | None, str | None]) -> tuple:
    """The key of a slot's one incident, whichever of :data:`SLOT_KINDS` it is: ``slot`` is (device, camera, slot)."""
    return ("slot", *slot)


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
