"""Slot incidents from the device's slot states (policy ``incidents: states``, the default).

The device compares each enrolled slot with its own reference and says, once the slot is still,
whether the enrolled piece is there (``present``), another piece is (``changed``), nothing is
(``empty``); a hand or motion over it is ``occluded`` (no decision) and a slot without a valid
reference is ``unenrolled``. The kiosk turns those states into incidents for every slot whose
planogram expects a piece:

* **missing**: the slot left ``present`` (its *away* time is the first frame that was not present,
  while it stays occluded, empty or changed) and reads ``empty``; an incident once
  ``now - away >= empty_grace_s`` (0 outside store hours or in a smash alarm). A lift-and-return
  within the grace never opens anything.
* **swapped**: ``changed`` for ``swap_confirm_s`` from its first ``changed`` (``occluded`` meanwhile does not
  break the count, any other state does; a long hand before it does not count); resolved when the slot
  is ``present`` again or re-enrolled. An open missing incident stays missing when another piece is put
  in the slot (a restock): enrolling the slot ends it.
* **smash**: more than ``burst_slots`` slots of one case went from ``present`` to ``empty`` with away
  times within ``burst_window_s``: an immediate case incident; its slots keep their grace (a piece out to
  be shown or sold with them is no theft), unless ``smash_slots_at_once``. A slot counts while it reads
  ``empty``, ``smash_hold_s`` after it first did (an arm resting across slots reads empty for a moment), and
  once it has counted, a hand over it (``occluded``) keeps it counting. A hand pass (``occluded``, then
  ``present``) never counts; a hand over the alarm's slots never ends it (:meth:`Engine.tick`).
* ``occluded`` and ``unenrolled`` never open an incident and never resolve one (no decision).

The category stays a **hint** on the slot (``category_incidents: true`` makes it the old "wrong"
incident again). A planogram state (sold, repair, ...) expects nothing: no missing or swapped there, a
piece appearing is a hint. A message without states (schema version 1) falls back to the category rules
of :mod:`kiosk.engine` for that slot.
"""
from __future__ import annotations

from typing import Any

from kiosk.config import EMPTY_LABELS, STATES
from kiosk.incident import SLOT_KINDS, Changes, Cond, slot_incident_key
from kiosk.words import case_shape, slot_words

#: States after which the piece may be gone: they make a slot's away time.
AWAY = ("occluded", "empty", "changed")
#: Conditions that decide nothing: an open incident stays as it is.
HOLD = ("occluded", "unenrolled")
#: Seconds before a missing piece's grace runs out in which a hand over its emptied slot no longer delays the alarm.
HAND_AT_GRACE_S = 2.0


def state_condition(expected: str | None, state: str, label: str | None,
                    category_incidents: bool = False) -> tuple[Cond, str | None]:
    """A slot's condition and hint from the planogram, the device's state and the category it reads.

    Returns:
        ``(cond, hint)``: cond is ``ok``, ``missing``, ``swapped``, ``wrong`` (only with
        ``category_incidents``), ``occluded``, ``unenrolled``, ``state`` (empty on purpose), ``extra``
        (a piece where the planogram says sold etc.) or ``unplanned``; hint is a line for the page or None.
    """
    piece = label is not None and label not in EMPTY_LABELS
    if expected is None:
        return Cond.UNPLANNED, None
    if expected in STATES:
        if state in ("present", "changed") or (state == "unenrolled" and piece):
            return Cond.EXTRA, f"a piece ({label}) is here; the planogram says {expected}"
        return Cond.STATE, None
    if state == "unenrolled":
        if not piece:   # a faint piece the model cannot see never enrols itself: the store must vouch for it
            return Cond.UNENROLLED, (f"not enrolled: the camera reads it empty; if its {expected} is there, enrol "
                                     "this case (the planogram's pieces are enrolled on its word)")
        return Cond.UNENROLLED, "not enrolled"
    if state == "occluded":
        return Cond.OCCLUDED, None
    if state == "empty":
        return Cond.MISSING, None
    if state == "changed":
        return Cond.SWAPPED, None
    if piece and label != expected:
        if category_incidents:
            return Cond.WRONG, None
        return Cond.OK, f"reads as {label}; the planogram says {expected}"
    return Cond.OK, None


class StatesMixin:
    """The state rules of :class:`kiosk.engine.Engine` (uses its planogram, policies and incident helpers)."""

    def words(self, case: tuple[str, str], name: str) -> str:
        """A slot of ``case`` in words (:func:`kiosk.words.slot_words`) with its name: ``top row, leftmost (r0c0)``."""
        text = slot_words(name, *case_shape(sorted({k[2] for k in (*self.planogram, *self.slots) if k[:2] == case})))
        return f"{text} ({name})" if text != name else f"slot {name}"

    def place(self, key: tuple[str, str, str]) -> str:
        """``Window, left: top row, second from left (r0c1)``."""
        return f"{self.case_title(key[:2])}: {self.words(key[:2], key[2])}"

    def _threshold(self, key: tuple[str, str, str], sv: Any, now: float) -> float:
        """Seconds a bad slot waits before its incident: the swap confirmation or the grace."""
        if sv.cond == Cond.SWAPPED:
            return self.policies.swap_confirm_s
        return self.grace(key[:2], now, key[2])

    def _evaluate_state(self, key: tuple[str, str, str], sv: Any, state: str, similarity: float | None,
                        now: float, ch: Changes, counts_before: dict | None, changed: bool) -> None:
        prev, prev_state = sv.cond, sv.state
        sv.state, sv.similarity = state, similarity
        if state in AWAY:
            if sv.away_since is None:
                sv.away_since, sv.away_from_present = now, prev_state == "present"
        else:
            sv.away_since, sv.away_from_present = None, False
        # first frame read empty since the slot left present: a hand over it meanwhile (the smash's own) keeps it
        sv.empty_since = None if state not in AWAY else now if state == "empty" and sv.empty_since is None \
            else sv.empty_since
        sv.smash_counted = sv.smash_counted and state in AWAY
        if state not in ("changed", "occluded"):   # a hand over a changed slot decides nothing: the count goes on
            sv.changed_since = None
        elif state == "changed" and sv.changed_since is None:
            sv.changed_since = now                 # ... but only `changed` starts it: never a long hand's time
        sv.cond, sv.hint = state_condition(self.planogram.get(key), state, sv.label, self.policies.category_incidents)
        if state != "occluded":
            sv.hand_on_missing = None
        elif prev == Cond.MISSING and prev_state != "occluded":
            sv.hand_on_missing = now
        if sv.hand_on_missing is not None and sv.away_since is not None \
                and sv.hand_on_missing - sv.away_since >= self.grace(key[:2], now, key[2]) - HAND_AT_GRACE_S:
            # A hand that comes over a slot seen emptied in the last seconds of its grace does not put the
            # alarm off: the slot stays missing under it (a customer's hand passing over a stolen piece's slot
            # at the wrong moment would delay the alarm by the hand's seconds). An earlier hand decides nothing,
            # as over any slot: it may be putting the piece back within the grace.
            sv.cond, sv.hint = Cond.MISSING, None
        if sv.cond == Cond.MISSING:
            since = sv.away_since
        elif sv.cond == Cond.SWAPPED:
            since = sv.changed_since
        elif sv.cond == "wrong":
            since = sv.bad_since if prev == "wrong" else now
        elif sv.cond in HOLD:
            since = sv.bad_since
        else:
            since = None
        if since != sv.bad_since:
            sv.bad_seq, sv.counts_before = (sv.seq, counts_before) if since is not None else (None, None)
        sv.bad_since = since
        if sv.bad_seq is not None and sv.seq is not None and sv.seq < sv.bad_seq:
            sv.bad_seq = sv.seq                 # the edge restarted (seq from 0): never a backwards range
        if sv.cond == Cond.MISSING and sv.away_from_present and sv.empty_since is not None \
                and now - sv.empty_since >= self.policies.smash_hold_s:   # every frame once its emptiness held
            sv.smash_counted = True
            self._state_burst(key, now, ch)
        inc = self.open.get(slot_incident_key(key))
        if sv.cond in SLOT_KINDS:
            if inc is None and now - sv.bad_since >= self._threshold(key, sv, now):
                self._open_slot(key, sv, now, ch)
            elif inc is not None and not (inc.kind == Cond.MISSING and sv.cond == Cond.SWAPPED):
                # A missing piece stays missing when another piece is put in its place (a restock before the
                # slot is enrolled again): the enrolment ends it. A swapped slot emptied becomes missing.
                self._refresh_slot(inc, key, sv, now, ch, loud=changed or inc.kind != sv.cond)
        elif sv.cond not in HOLD and inc is not None:
            where = self.words(key[:2], key[2])
            why = (f"the piece is back in {where}" if sv.cond == Cond.OK
                   else f"{where} is now {self.planogram.get(key) if sv.cond == Cond.STATE else sv.cond}")
            self._resolve(inc, why, now, ch)
        if changed or prev != sv.cond:
            ch.slots.append(self.slot_dict(key))

    def _state_burst(self, key: tuple[str, str, str], now: float, ch: Changes) -> None:
        """A slot went from present to empty: with others of its case, is it a smash-and-grab?"""
        case = key[:2]
        if ("smash", *case) in self.open:
            return
        window, limit = self.policies.burst_window_s, self._burst_slots(case)
        # The slots that count (emptied, and empty past the hold), and those that counted before a hand came over
        # them: the smash's own hands, or a customer's, over its emptied slots must not put the alarm off.
        gone = sorted((sv.away_since, k[2]) for k, sv in self.slots.items() if k[:2] == case and sv.away_since
                      is not None and sv.smash_counted and (sv.cond == Cond.MISSING or sv.state == "occluded"))
        best: list[tuple[float, str]] = []
        for i in range(len(gone)):
            group = [g for g in gone[i:] if g[0] - gone[i][0] <= window]
            if key[2] in {n for _, n in group} and len(group) > len(best):
                best = group
        if len(best) <= limit:
            return
        names = [n for _, n in best]
        reason = (f"{len(names)} slots of {self.case_title(case)} emptied within {window:g} s "
                  f"({', '.join(self.words(case, n) for n in names)}; more than {limit} allowed)")
        detail = {"slots": names, "window_s": window, "states": True}
        self._open_or_update("smash", case[0], case[1], None, reason, detail, now, ch)
        for k, sv in self.slots.items() if self.policies.smash_slots_at_once else ():   # slot incidents now too
            if k[:2] == case and k != key and sv.cond == Cond.MISSING and slot_incident_key(k) not in self.open:
                self._open_slot(k, sv, now, ch)

    def _state_reason(self, key: tuple[str, str, str], sv: Any, now: float) -> str:
        expected = self.planogram.get(key)
        lasted = now - (sv.bad_since if sv.bad_since is not None else now)
        sim = f"; similarity to its reference {sv.similarity:.2f}" if sv.similarity is not None else ""
        if sv.cond == Cond.SWAPPED:
            return (f"another piece is in {self.place(key)} (it should hold the enrolled {expected}; "
                    f"reads as {sv.label}{sim}) for {lasted:.0f} s")
        return f"the {expected} of {self.place(key)} is missing: empty for {lasted:.0f} s"

    def on_enrolled(self, case: tuple[str, str], slots: list[str], user: str, now: float) -> Changes:
        """Slots of ``case`` were (re-)enrolled: their swapped and missing incidents end (the piece there now is
        the reference)."""
        ch = Changes()
        for name in slots:
            key = (*case, name)
            sv = self.slots.get(key)
            if sv is not None:   # the slot starts afresh: nothing it read before the enrolment counts
                sv.changed_since = sv.away_since = sv.bad_since = None
            inc = self.open.get(slot_incident_key(key))
            if inc is not None and inc.kind in (Cond.SWAPPED, Cond.MISSING):
                self._resolve(inc, f"{self.words(case, name)} re-enrolled by {user}", now, ch)
        return ch
