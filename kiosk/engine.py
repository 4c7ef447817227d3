"""The kiosk's brain: latest state per slot and camera, and the incidents they raise. Pure and clocked.

Every input carries ``now`` (Unix seconds), so tests drive time by hand; nothing here sleeps, reads a
socket or touches the database: each call returns :class:`~kiosk.incident.Changes` that the service
stores and streams. Inputs are messages already checked against the schemas.

Rules (the config's ``policies`` and per-case overrides):

* **missing**: the planogram expects a class, the slot shows ``empty`` or ``unknown``; an incident once
  that has lasted ``empty_grace_s`` (0 outside store hours; for a smash alarm's slots with ``smash_slots_at_once``).
* **wrong**: another class is in the slot, for as long as the same grace (one incident per slot:
  missing and wrong share it, the kind changes in place).
* **smash**: more than ``burst_slots`` slots of one case went from a piece to none within
  ``burst_window_s``: an immediate alarm for the case (its missing slots too with ``smash_slots_at_once``).
* **camera**: status ``down``/``eos``, no heartbeat for ``stale_heartbeats`` intervals, or a seq frozen
  over as many heartbeats (:mod:`kiosk.health`).
* **model**: a labels message names another model than before; resolved when a manager acknowledges it.

Incidents resolve by themselves when the slot (case, camera) is right again. Those are the category rules
(``incidents: categories``, and any slot of a message without states).
With ``incidents: states`` (the default) slot incidents come from the device's slot states instead:
missing, swapped, smash-and-grab (:mod:`kiosk.slot_states`).
"""
from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from edge.errors import ConfigError
from kiosk.config import EMPTY_LABELS, STATES, KioskConfig, check_expected
from kiosk.health import CameraView, HealthMixin
from kiosk.incident import ACKNOWLEDGED, RESOLVED, SLOT_KINDS, Changes, Cond, Incident, incident_key, slot_incident_key
from kiosk.slot_states import HOLD, StatesMixin

logger = logging.getLogger(__name__)

NOTE_MAX = 500
SlotKey = tuple[str, str, str]
CaseKey = tuple[str, str]


class ActionError(ConfigError):
    """A person's action cannot be done (unknown incident, already acknowledged, bad planogram value)."""


@dataclass
class SlotView:
    """The latest labels of one slot, and since when it is in its current condition."""
    label: str | None = None
    score: float | None = None
    topk: list = field(default_factory=list)
    seq: int | None = None
    since: float | None = None          # when the label became this one
    cond: Cond = Cond.NODATA
    bad_since: float | None = None      # when missing/wrong began
    bad_seq: int | None = None
    counts_before: dict | None = None   # the case's counts just before it went bad
    state: str | None = None            # the device's slot state (schema 2), None before or without
    similarity: float | None = None
    hint: str | None = None             # a line for the page (category differs, not enrolled, ...)
    away_since: float | None = None     # first frame not present, while occluded/empty/changed
    away_from_present: bool = False     # ... and the slot was present just before
    empty_since: float | None = None    # first frame read `empty` since it left present
    smash_counted: bool = False         # ... and it counted toward a smash since (a hand over it then keeps it)
    changed_since: float | None = None  # first frame of the current run of `changed`
    hand_on_missing: float | None = None  # first frame of a hand over the slot while it was seen emptied
    logged: str | None = None           # the state last written to the history (occluded never is)


def condition(expected: str | None, label: str | None) -> Cond:
    """A slot's condition from what the planogram expects and what the camera sees."""
    if label is None:
        return Cond.NODATA
    if expected is None:
        return Cond.UNPLANNED
    seen_empty = label in EMPTY_LABELS
    if expected in STATES:
        return Cond.STATE if seen_empty else Cond.EXTRA
    if label == expected:
        return Cond.OK
    return Cond.MISSING if seen_empty else Cond.WRONG


class Engine(StatesMixin, HealthMixin):
    """State and incidents of one store.

    Args:
        config: The kiosk config (planogram and policies).
        overrides: Planogram edits from the history (they win over the file).
        incidents: Unresolved incidents from the history (a restart keeps them).
        now: Start time: devices never heard from are stale after the heartbeat window from here.
        suggested: Planogram values filled in by an enrolment and not confirmed yet.
    """

    def __init__(self, config: KioskConfig, overrides: dict[SlotKey, str] | None = None,
                 incidents: list[Incident] | None = None, *, now: float,
                 suggested: set[SlotKey] | None = None) -> None:
        self.config = config
        self.policies = config.policies
        self.started = now
        self.planogram: dict[SlotKey, str] = {}
        self.cases: dict[CaseKey, Any] = {}
        for dev in config.devices:
            for cam, plan in dev.cameras.items():
                self.cases[(dev.id, cam)] = plan
                for slot, expected in plan.slots.items():
                    self.planogram[(dev.id, cam, slot)] = expected
        for key, value in (overrides or {}).items():
            if key[:2] in self.cases:
                self.planogram[key] = value
        self.slots: dict[SlotKey, SlotView] = {k: SlotView() for k in self.planogram}
        self.cams: dict[CaseKey, CameraView] = {k: CameraView() for k in self.cases}
        self.last_heartbeat: dict[str, float] = {}
        self.models: dict[CaseKey, dict] = {}
        self.removals: dict[CaseKey, deque] = {k: deque() for k in self.cases}
        self.open: dict[tuple, Incident] = {}
        self.suggested: set[SlotKey] = set(suggested or ())
        self.enrolments: dict[CaseKey, dict | None] = {}
        for inc in incidents or []:
            self.open[inc.key] = inc

    # -- policies ----------------------------------------------------------------------------------
    def store_open(self, now: float) -> bool:
        hours = self.config.hours
        return hours is None or hours.is_open(now)

    def grace(self, case: CaseKey, now: float, slot: str | None = None) -> float:
        """Seconds a slot of ``case`` may be wrong before it is an incident."""
        smash = self.open.get(incident_key("smash", *case, None))
        # smash_slots_at_once: the slots emptied with a smash are incidents at once; any other slot of the case
        # keeps its grace, as does one of the smash restocked and emptied again (away since after the alarm).
        if not self.store_open(now) or (self.policies.smash_slots_at_once and smash is not None
                                        and slot in smash.evidence.get("slots", ())
                                        and self._emptied_by(smash, (*case, slot))):
            return 0.0
        plan = self.cases.get(case)
        g = plan.empty_grace_s if plan is not None else None
        return self.policies.empty_grace_s if g is None else g

    def _emptied_by(self, smash: Incident, key: SlotKey) -> bool:
        """Whether the slot's current time away began by the time ``smash`` opened."""
        sv = self.slots.get(key)
        since = sv.away_since if sv is not None else None
        return since is None or since <= smash.opened_at

    def _burst_slots(self, case: CaseKey) -> int:
        plan = self.cases.get(case)
        return plan.burst_slots if plan is not None and plan.burst_slots is not None else self.policies.burst_slots

    # -- inputs ------------------------------------------------------------------------------------
    def on_labels(self, msg: dict[str, Any], now: float) -> Changes:
        """A labels message (from the feed or a snapshot)."""
        ch = Changes()
        dev, cam, seq = msg["device"], msg["camera"], msg["seq"]
        case = (dev, cam)
        view = self.cams.get(case)
        if view is None:                       # a camera the planogram does not know: state only
            view = self.cams[case] = CameraView()
        if view.last_labels is None and case in self.cases:   # the first labels: does the planogram fit?
            unknown = sorted(set(self.cases[case].slots) - {s["name"] for s in msg["slots"]})
            if unknown:
                logger.warning("%s: planogram slots the camera does not report (never checked): %s",
                               self.case_title(case), unknown)
        counts_before = view.counts
        view.counts, view.seq, view.last_labels = msg.get("counts") or {}, seq, now
        self.enrolments[case] = msg.get("enrolment")
        self._check_model(case, msg, now, ch)
        states = self.policies.incidents == "states"
        for s in msg["slots"]:
            key = (dev, cam, s["name"])
            sv = self.slots.get(key)
            if sv is None:
                sv = self.slots[key] = SlotView()
            state = s.get("state")
            changed = state != sv.state
            by_state = states and state is not None
            if s["label"] != sv.label:
                if not by_state:               # by category: every change of the category is the slot's record
                    ch.slot_rows.append((now, dev, cam, s["name"], s["label"], s["score"], seq, state))
                sv.since = now
                changed = True
            if by_state and state not in (sv.logged, "occluded"):   # by state: what the piece did, not the
                sv.logged = state                                     # category's flicker or a hand's passing
                ch.slot_rows.append((now, dev, cam, s["name"], s["label"], s["score"], seq, state))
            sv.label, sv.score, sv.topk, sv.seq = s["label"], s["score"], s["topk"], seq
            if states and state is not None:
                self._evaluate_state(key, sv, state, s.get("similarity"), now, ch, counts_before, changed)
            else:                              # schema 1, or the category rules chosen: by category
                sv.state, sv.similarity = state, s.get("similarity")
                self._evaluate(key, sv, now, ch, counts_before, changed)
        self._update_health(case, now, ch)
        return ch

    def _check_model(self, case: CaseKey, msg: dict[str, Any], now: float, ch: Changes) -> None:
        model = msg.get("model") or {}
        before = self.models.get(case)
        self.models[case] = model
        if before is None or before == model:
            return
        reason = (f"model changed from {before.get('name')} {before.get('version')} ({before.get('precision')}, "
                  f"{before.get('backend')}) to {model.get('name')} {model.get('version')} "
                  f"({model.get('precision')}, {model.get('backend')}) at seq {msg['seq']}")
        self._open_or_update("model", case[0], case[1], None, reason, {"before": before, "after": model,
                                                                       "seq": msg["seq"]}, now, ch)

    def _evaluate(self, key: SlotKey, sv: SlotView, now: float, ch: Changes, counts_before: dict | None,
                  changed: bool) -> None:
        prev = sv.cond
        sv.hint = None
        sv.cond = condition(self.planogram.get(key), sv.label)
        bad = sv.cond in SLOT_KINDS
        if bad and prev not in SLOT_KINDS:
            sv.bad_since, sv.bad_seq, sv.counts_before = now, sv.seq, counts_before
        elif not bad:
            sv.bad_since = sv.bad_seq = sv.counts_before = None
        elif sv.bad_seq is not None and sv.seq is not None and sv.seq < sv.bad_seq:
            sv.bad_seq = sv.seq                 # the edge restarted (seq from 0): never a backwards range
        if sv.cond == Cond.MISSING and prev in (Cond.OK, Cond.WRONG):   # a piece taken, whatever it was read as
            self._removal(key, now, ch)
        inc = self.open.get(slot_incident_key(key))
        if bad and inc is None and now - sv.bad_since >= self.grace(key[:2], now, key[2]):
            self._open_slot(key, sv, now, ch)
        elif bad and inc is not None:
            self._refresh_slot(inc, key, sv, now, ch, loud=changed or inc.kind != sv.cond)
        elif not bad and inc is not None:
            self._resolve(inc, f"slot {key[2]} shows {sv.label} again" if sv.cond == Cond.OK
                          else f"slot {key[2]} is now {sv.cond} ({sv.label})", now, ch)
        if changed or prev != sv.cond:
            ch.slots.append(self.slot_dict(key))

    def _removal(self, key: SlotKey, now: float, ch: Changes) -> None:
        case = key[:2]
        q = self.removals.setdefault(case, deque())
        window = self.policies.burst_window_s
        q.append((now, key[2]))
        while q and now - q[0][0] > window:
            q.popleft()
        limit = self._burst_slots(case)
        if len(q) > limit and incident_key("smash", *case, None) not in self.open:
            names = sorted({s for _, s in q})
            reason = (f"{len(q)} slots of {self.case_title(case)} emptied within {window:g} s "
                      f"({', '.join(names)}; more than {limit} allowed)")
            self._open_or_update("smash", case[0], case[1], None, reason, {"slots": names, "window_s": window}, now, ch)
            for k, sv in self.slots.items() if self.policies.smash_slots_at_once else ():   # slot incidents now
                if k[:2] == case and k != key and sv.cond == Cond.MISSING and slot_incident_key(k) not in self.open:
                    self._open_slot(k, sv, now, ch)

    def tick(self, now: float) -> Changes:
        """Time passing: graces that ran out, stale cameras, smash alarms whose case is whole again."""
        ch = Changes()
        for key, sv in self.slots.items():
            if sv.bad_since is None or sv.cond not in SLOT_KINDS or slot_incident_key(key) in self.open:
                continue
            case = key[:2]
            wait = self._threshold(key, sv, now) if sv.cond == Cond.SWAPPED else self.grace(case, now, key[2])
            if now - sv.bad_since >= wait:
                self._open_slot(key, sv, now, ch)
        for case in list(self.cams):
            self._update_health(case, now, ch)
        for inc in [i for i in self.open.values() if i.kind == "smash"]:
            case = (inc.device, inc.camera)
            if not any(sv.cond == Cond.MISSING or (sv.cond in HOLD and k[2] in inc.evidence.get("slots", ()))
                       for k, sv in self.slots.items() if k[:2] == case):   # a hand over its slots decides nothing
                self._resolve(inc, f"every slot of {self.case_title(case)} is back", now, ch)
        return ch

    # -- incidents ---------------------------------------------------------------------------------
    def _evidence(self, key: SlotKey, sv: SlotView) -> dict[str, Any]:
        view = self.cams.get(key[:2])
        ev = {"expected": self.planogram.get(key), "label": sv.label, "score": sv.score, "topk": sv.topk,
              "seq_first": sv.bad_seq, "seq_last": sv.seq, "since": sv.bad_since,
              "counts_before": sv.counts_before, "counts_after": view.counts if view else None}
        if sv.state is not None:
            ev.update(states=True, state=sv.state, similarity=sv.similarity, place=self.place(key),
                      enrolment=self.enrolments.get(key[:2]))
        return ev

    def _slot_reason(self, key: SlotKey, sv: SlotView, now: float) -> str:
        if sv.cond in (Cond.MISSING, Cond.SWAPPED) and sv.state is not None:
            return self._state_reason(key, sv, now)
        expected = self.planogram.get(key)
        what = (f"shows {sv.label} ({sv.score:.2f})" if sv.cond == Cond.WRONG
                else f"is {sv.label}" + (f" ({sv.score:.2f})" if sv.score is not None else ""))
        lasted = now - (sv.bad_since or now)
        return (f"{self.case_title(key[:2])} slot {key[2]} should hold {expected} but {what} "
                f"since seq {sv.bad_seq}" + (f" ({lasted:.0f} s)" if lasted >= 1 else ""))

    def _open_slot(self, key: SlotKey, sv: SlotView, now: float, ch: Changes) -> None:
        self._open_or_update(sv.cond, *key, self._slot_reason(key, sv, now), self._evidence(key, sv), now, ch)
        ch.slots.append(self.slot_dict(key))

    def _refresh_slot(self, inc: Incident, key: SlotKey, sv: SlotView, now: float, ch: Changes, loud: bool) -> None:
        inc.evidence = self._evidence(key, sv)
        inc.updated_at = now
        if loud:   # a new label or kind: tell people and store it; same-label frames only refresh seq_last
            inc.kind = sv.cond
            inc.reason = self._slot_reason(key, sv, now)
            ch.incidents.append(("updated", inc))

    def _open_or_update(self, kind: str, device: str, camera: str | None, slot: str | None, reason: str,
                        evidence: dict[str, Any], now: float, ch: Changes) -> Incident:
        key = incident_key(kind, device, camera, slot)
        inc = self.open.get(key)
        if inc is None:
            inc = Incident(kind, device, camera, slot, opened_at=now, updated_at=now, reason=reason, evidence=evidence)
            self.open[key] = inc
            logger.warning("incident opened: %s", reason)
            ch.incidents.append(("opened", inc))
        elif inc.reason != reason or inc.kind != kind:
            inc.kind, inc.reason, inc.evidence, inc.updated_at = kind, reason, evidence, now
            ch.incidents.append(("updated", inc))
        return inc

    def _resolve(self, inc: Incident, why: str, now: float, ch: Changes) -> None:
        inc.state, inc.resolved_at, inc.updated_at = RESOLVED, now, now
        inc.evidence = {**inc.evidence, "resolution": why}
        self.open.pop(inc.key, None)
        logger.info("incident resolved: %s (%s)", inc.reason, why)
        ch.incidents.append(("resolved", inc))
        if inc.slot is not None:
            ch.slots.append(self.slot_dict((inc.device, inc.camera, inc.slot)))

    def find(self, incident_id: int) -> Incident | None:
        """The unresolved incident with this id."""
        return next((i for i in self.open.values() if i.id == incident_id), None)

    def acknowledge(self, incident_id: int, user: str, note: str, now: float) -> Changes:
        """A manager takes an incident, with a note; a model change is thereby accepted and resolved.

        Raises:
            ActionError: no such unresolved incident, already acknowledged, or a missing/too long note.
        """
        note = (note or "").strip()
        if not note:
            raise ActionError("a note is required to acknowledge an incident")
        if len(note) > NOTE_MAX:
            raise ActionError(f"the note is {len(note)} characters; at most {NOTE_MAX}")
        inc = self.find(incident_id)
        if inc is None:
            raise ActionError(f"incident {incident_id} is not open (unknown or already resolved)")
        if inc.state == ACKNOWLEDGED:
            raise ActionError(f"incident {incident_id} was already acknowledged by {inc.ack_by}")
        inc.state, inc.ack_by, inc.ack_at, inc.ack_note, inc.updated_at = ACKNOWLEDGED, user, now, note, now
        ch = Changes(incidents=[("acknowledged", inc)])
        if inc.kind == "model":
            self._resolve(inc, f"accepted by {user}", now, ch)
        return ch

    def set_expected(self, key: SlotKey, value: str, now: float, *, suggested: bool = False
                     ) -> tuple[str | None, Changes]:
        """A manager edits the planogram; returns the old value and what changed.

        ``suggested``: the value comes from an enrolment (what the device reads) and waits for a
        manager's confirmation; any edit without it confirms the slot.

        Raises:
            ActionError: an unknown case or slot, or a value that is neither a class nor a state.
        """
        if key[:2] not in self.cases:
            raise ActionError(f"no case {key[0]}/{key[1]} in this store")
        if key not in self.planogram and key not in self.slots:
            raise ActionError(f"no slot {key[2]} in case {key[0]}/{key[1]}")
        try:
            check_expected(value)
        except ValueError as exc:
            raise ActionError(str(exc)) from None
        old = self.planogram.get(key)
        self.planogram[key] = value
        (self.suggested.add if suggested else self.suggested.discard)(key)
        sv = self.slots.setdefault(key, SlotView())
        ch = Changes()
        if (old is None or old in STATES) and value not in STATES and sv.away_since is not None:
            # A piece is expected from now on (a restocked slot typed in before its enrolment took): its
            # grace starts now, not when the slot emptied for the sale.
            sv.away_since, sv.away_from_present = now, False
        if sv.state is not None and self.policies.incidents == "states":
            self._evaluate_state(key, sv, sv.state, sv.similarity, now, ch, None, changed=True)
        else:
            self._evaluate(key, sv, now, ch, None, changed=True)
        return old, ch

    # -- views -------------------------------------------------------------------------------------
    def case_title(self, case: CaseKey) -> str:
        plan = self.cases.get(case)
        return (plan.title if plan is not None and plan.title else None) or f"{case[0]}/{case[1]}"

    def slot_dict(self, key: SlotKey) -> dict[str, Any]:
        """A slot cell for the page and the API."""
        sv = self.slots.get(key) or SlotView()
        inc = self.open.get(slot_incident_key(key))
        return {"device": key[0], "camera": key[1], "slot": key[2], "expected": self.planogram.get(key),
                "label": sv.label, "score": sv.score, "cond": sv.cond, "since": sv.since, "seq": sv.seq,
                "alarm": inc is not None, "state": sv.state, "similarity": sv.similarity, "hint": sv.hint,
                "suggested": key in self.suggested}

    def incidents(self) -> list[Incident]:
        """Unresolved incidents, oldest first."""
        return sorted(self.open.values(), key=lambda i: i.opened_at)
