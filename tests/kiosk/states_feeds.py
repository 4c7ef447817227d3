"""Helpers for slot-state tests: schema-version-2 labels messages (per-slot ``state``/``similarity``),
built the way the device's protocol says (docs/kiosk-states.md), and a six-slot case."""
from __future__ import annotations

from typing import Any

import yaml

from kiosk.config import parse_config
from tests.helpers import labels_message as labels

from .feeds import Served, add_users

#: The six-slot case: two rows of three; r1c2 is sold (nothing expected there).
PLAN = {"r0c0": "ring", "r0c1": "ring", "r0c2": "necklace", "r1c0": "watch", "r1c1": "earring", "r1c2": "sold"}
#: What the device reads when every piece is in place.
SEEN = {"r0c0": "ring", "r0c1": "ring", "r0c2": "necklace", "r1c0": "watch", "r1c1": "earring", "r1c2": "empty"}
ENROLMENT = {"id": "0123456789ab", "ts": 1.0, "model": "m@1.0.0"}
SIMILARITY = {"present": 0.93, "changed": 0.41, "empty": 0.12, "occluded": 0.55, "unenrolled": None}


def states_config(tmp_path, **top: Any) -> dict:
    """A plaintext loopback kiosk config with the six-slot case as case-01/cam0."""
    devices = [{"id": "case-01", "labels": "tcp://127.0.0.1:1", "snapshot": "tcp://127.0.0.1:2",
                "cameras": {"cam0": {"slots": dict(PLAN), "title": "Window"}}}]
    return {"store": "Test store", "state_dir": str(tmp_path / "state"), "curve": None, "devices": devices, **top}


def state_labels(states: dict[str, str] | None = None, seen: dict[str, str] | None = None, *, seq: int = 0,
                 enrolment: dict | None = ENROLMENT, **kw: Any) -> dict:
    """A schema-2 labels message: every slot ``present`` (``empty`` for r1c2) unless ``states`` says
    otherwise; labels from ``seen`` over :data:`SEEN` (an empty state reads ``empty`` by default)."""
    states = {"r1c2": "empty", **(states or {})}
    slots = {n: ("empty" if states.get(n) == "empty" else lab) for n, lab in SEEN.items()}
    slots.update(seen or {})
    msg = labels(slots, seq=seq, **kw)
    msg["schema_version"] = 2
    msg["enrolment"] = enrolment
    for s in msg["slots"]:
        s["state"] = states.get(s["name"], "present")
        s["similarity"] = SIMILARITY[s["state"]]
    return msg


def served_states(tmp_path, device, slots: dict) -> Served:
    """A real kiosk server on the six-slot case (``slots`` as typed) fed by ``device`` (a states device on
    loopback), its users added and every slot present; no grace, no swap confirmation."""
    cfg = states_config(tmp_path, devices=[device.entry({"cam0": {"slots": dict(slots), "title": "Window"}})],
                        policies={"empty_grace_s": 0, "swap_confirm_s": 0})
    (tmp_path / "kiosk.yaml").write_text(yaml.safe_dump(cfg))
    served = Served(parse_config(cfg), feed=False)
    add_users(served.kiosk.history)
    served.kiosk.on_message("labels", state_labels(seq=0))
    return served
