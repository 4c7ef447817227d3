"""The plan of a store day: what happens to which slot when, and which hand does it.

Everything a day holds is decided here, before a frame is drawn, from one generator: the opening
stock, the slot events (lift-and-return, sale, theft, swap, smash-and-grab, restock) with the staff's
actions that follow them, customers' hand passes, and the case-wide nuisances (a lighting ramp,
flicker, a camera nudge, glare). Two rules keep the truth unambiguous: events on one slot are at
least ``grace + 5`` s apart (a removal's alarm window and the next event never meet), and nothing
that must raise an alarm happens in the last ``grace + 5`` s. One hand is in the case at a time.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

import numpy as np

from edge.errors import ConfigError
from trainer.synth.day_ambient import Ambient, plan_ambient

OPENING_QUIET_S = 10.0  # no hand and no event in the first seconds: the device enrols the case
HAND_GAP_S = 0.4        # between one hand leaving and the next coming in
SEPARATION_S = 5.0      # on top of the grace, between events on one slot
#: Per hour of video; at least one of each whatever the length.
PER_HOUR = {"hand_pass": 200, "lift_return": 40, "sale": 10, "theft": 10, "swap": 10, "smash": 2}
SMASH_SLOTS = 3
SMASH_WITHIN_S = 10.0   # a smash-and-grab empties its slots within this
RESTOCK_AFTER_S = 15.0  # a removed piece's slot is restocked this long after its alarm could have fired
RESTOCK_END_S = 20.0    # no restock in the last seconds (its enrolment must fit)


@dataclass
class Visit:
    """One hand in the case: in at ``t_in``, at the slot from ``t_reach`` to ``t_leave``, gone at ``t_out``."""

    t_in: float
    t_reach: float
    t_leave: float
    t_out: float
    slot: int
    entry: float          # where it enters along the bottom edge, as a share of the width
    skin: int
    event: int            # index of its event in :attr:`DayPlan.events`


@dataclass
class Change:
    """From frame time ``t`` on, slot ``slot`` holds ``piece`` (None: empty), moved by ``offset`` px."""

    t: float
    slot: int
    piece: str | None
    offset: tuple[int, int] = (0, 0)


@dataclass
class PieceSpec:
    """A piece of the day: its class and what it is drawn from (a drawer's seed, or a photo)."""

    id: str
    cls: str
    photo: int | None = None   # index into that class's usable photos
    mirror: bool = False


@dataclass
class DayPlan:
    events: list[dict] = field(default_factory=list)   # truth lines, slot indices still as ints
    actions: list[dict] = field(default_factory=list)
    visits: list[Visit] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    pieces: dict[str, PieceSpec] = field(default_factory=dict)
    ambient: list[Ambient] = field(default_factory=list)


class HandTimeline:
    """The times a hand is in the case, so that a new one waits for the last to leave."""

    def __init__(self):
        self.starts: list[float] = []
        self.ends: list[float] = []

    def place(self, t: float, duration: float) -> float:
        """The earliest start at or after ``t`` where ``duration`` s fits between the hands already placed."""
        i = bisect.bisect_right(self.starts, t)
        if i > 0:
            t = max(t, self.ends[i - 1] + HAND_GAP_S)
        while i < len(self.starts) and t + duration + HAND_GAP_S > self.starts[i]:
            t = max(t, self.ends[i] + HAND_GAP_S)
            i += 1
        self.starts.insert(i, t)
        self.ends.insert(i, t + duration)
        return t


class _Planner:
    def __init__(self, rng, n_slots, grid, seconds, fps, grace, classes, photo_counts):
        self.rng, self.n_slots, self.grid, self.T, self.fps, self.grace = rng, n_slots, grid, seconds, fps, grace
        self.classes = classes
        self.photo_counts = photo_counts
        self.swappable = [c for c in classes if photo_counts is None or photo_counts[c] >= 2]
        self.plan = DayPlan()
        self.hands = HandTimeline()
        self.piece_at: list[str | None] = [None] * n_slots
        self.free_at = [OPENING_QUIET_S] * n_slots
        self.busy: list[list[tuple[float, float]]] = [[] for _ in range(n_slots)]
        self.photo_order: dict[str, list[int]] = {}
        self.photo_used: dict[str, int] = {}
        self.alarm_end = seconds - (grace + SEPARATION_S)

    # ---------------------------------------------------------------- pieces

    def snap(self, t: float) -> float:
        """The first frame's time at or after ``t`` (truth times are frame times)."""
        return math.ceil(t * self.fps - 1e-6) / self.fps

    def new_piece(self, cls: str, not_photo: int | None = None) -> str:
        pid = f"p{len(self.plan.pieces):03d}"
        spec = PieceSpec(pid, cls)
        if self.photo_counts is not None:
            n = self.photo_counts[cls]
            if cls not in self.photo_order:
                self.photo_order[cls] = [int(v) for v in self.rng.permutation(n)]
                self.photo_used[cls] = 0
            k = self.photo_used[cls]
            if n > 1 and self.photo_order[cls][k % n] == not_photo:
                k += 1
            # A photo is shown again only once every one of its class has been: then mirrored.
            spec.photo, spec.mirror = self.photo_order[cls][k % n], (k // n) % 2 == 1
            self.photo_used[cls] = k + 1
        self.plan.pieces[pid] = spec
        return pid

    def stock(self) -> None:
        order = [self.classes[i % len(self.classes)] for i in range(self.n_slots)]
        order = [order[int(i)] for i in self.rng.permutation(self.n_slots)]
        for k, cls in enumerate(order):
            pid = self.new_piece(cls)
            self.piece_at[k] = pid
            self.plan.changes.append(Change(0.0, k, pid))
            self.plan.events.append({"t": 0.0, "kind": "stock", "slots": [k], "class": cls, "piece": pid})

    # ---------------------------------------------------------------- hands

    def visit(self, t: float, slot: int, event: int, dwell: float) -> Visit:
        """Place one hand visit at or after ``t``; the hand is at the slot for ``dwell`` s."""
        reach = max(0.6, 2.0 / self.fps) + self.rng.uniform(0.0, 0.3)
        leave = max(0.6, 2.0 / self.fps) + self.rng.uniform(0.0, 0.3)
        t_in = self.hands.place(t, reach + dwell + leave)
        v = Visit(t_in, t_in + reach, t_in + reach + dwell, t_in + reach + dwell + leave, slot,
                  float(self.rng.uniform(0.15, 0.85)), int(self.rng.integers(4)), event)
        self.plan.visits.append(v)
        return v

    def dwell(self, lo: float = 1.0, hi: float = 2.0) -> float:
        return max(float(self.rng.uniform(lo, hi)), 3.0 / self.fps)

    def _touch(self, kind: str, t: float, slot: int, removal: bool, extra: dict | None = None) -> tuple[dict, Visit]:
        """A hand takes (``removal``) or puts a piece at ``slot``; returns the event and the visit."""
        ev = {"t": 0.0, "kind": kind, "slots": [slot], **(extra or {})}
        self.plan.events.append(ev)
        v = self.visit(t, slot, len(self.plan.events) - 1, self.dwell())
        ev["t"] = self.snap((v.t_reach + v.t_leave) / 2)
        ev["hands"] = [[round(v.t_in, 3), round(v.t_out, 3)]]
        if removal:
            ev["class"], ev["piece"] = self.plan.pieces[self.piece_at[slot]].cls, self.piece_at[slot]
            self.piece_at[slot] = None
            self.plan.changes.append(Change(ev["t"], slot, None))
        return ev, v

    def _reserve(self, slot: int, start: float, end: float, free_at: float) -> None:
        self.busy[slot].append((start - SEPARATION_S, end))
        self.free_at[slot] = free_at

    # ---------------------------------------------------------------- slot events

    def eligible(self, t: float, kind: str) -> list[int]:
        out = [k for k in range(self.n_slots) if self.piece_at[k] is not None and self.free_at[k] <= t]
        if kind == "swap":
            out = [k for k in out if self.plan.pieces[self.piece_at[k]].cls in self.swappable]
        return out

    def restock_later(self, slot: int, after: float, queue: list) -> None:
        t = after + self.grace + RESTOCK_AFTER_S
        t += self.rng.uniform(0.0, max(0.0, min(60.0, self.T - RESTOCK_END_S - t)))
        if t <= self.T - RESTOCK_END_S:
            queue.append((t, "restock", slot))
        self.free_at[slot] = math.inf   # the restock (or the end of the day) frees it

    def lift_return(self, t: float, slot: int) -> None:
        off = self.rng.uniform(0.15, 0.7) * self.grace
        ev, v = self._touch("lift_return", t, slot, removal=True)
        pid = ev["piece"]
        back = self.visit(ev["t"] + off - (v.t_reach - v.t_in) - 0.5 * self.dwell(), slot, len(self.plan.events) - 1,
                          self.dwell())
        ev["t_end"] = self.snap((back.t_reach + back.t_leave) / 2)
        if not ev["t_end"] - ev["t"] < self.grace:
            raise ConfigError(f"--grace-s: {self.grace} s is too short for a piece to be shown and put back")
        ev["hands"].append([round(back.t_in, 3), round(back.t_out, 3)])
        self.piece_at[slot] = pid
        # Put back by hand: a few pixels from where it lay.
        offset = tuple(int(v) for v in self.rng.integers(-3, 4, 2))
        self.plan.changes.append(Change(ev["t_end"], slot, pid, offset))
        self._reserve(slot, v.t_in, ev["t_end"], ev["t_end"] + self.grace + SEPARATION_S)

    def sale_or_theft(self, kind: str, t: float, slot: int, queue: list) -> None:
        ev, v = self._touch(kind, t, slot, removal=True)
        end = ev["t"]
        if kind == "sale":
            end = self.snap(ev["t"] + self.rng.uniform(3.0, 8.0))
            self.plan.actions.append({"t": end, "action": "mark_sold", "slot": slot})
        self._reserve(slot, v.t_in, end + self.grace + SEPARATION_S, math.inf)
        self.restock_later(slot, end, queue)

    def swap(self, t: float, slot: int) -> None:
        old = self.piece_at[slot]
        spec = self.plan.pieces[old]
        self.plan.events.append({"t": 0.0, "kind": "swap", "slots": [slot]})
        ev = self.plan.events[-1]
        v = self.visit(t, slot, len(self.plan.events) - 1, self.dwell(2.0, 3.0))
        span = v.t_leave - v.t_reach
        ev["t"] = self.snap(v.t_reach + 0.3 * span)
        ev["t_end"] = max(self.snap(v.t_reach + 0.7 * span), ev["t"] + 1.0 / self.fps)
        new = self.new_piece(spec.cls, not_photo=spec.photo)
        ev.update({"class": spec.cls, "piece": old, "new_piece": new, "hands": [[round(v.t_in, 3), round(v.t_out, 3)]]})
        self.plan.changes += [Change(ev["t"], slot, None), Change(ev["t_end"], slot, new)]
        self.piece_at[slot] = new
        # The store deals with it and enrols what now lies there, once the alarm has had its time.
        enrol = self.snap(ev["t_end"] + self.grace + 15.0 + self.rng.uniform(0.0, 30.0))
        if enrol <= self.T - 5.0:
            self.plan.actions.append({"t": enrol, "action": "enrol", "slot": slot, "after": "swap"})
            self._reserve(slot, v.t_in, enrol, enrol + self.grace + SEPARATION_S)
        else:
            self._reserve(slot, v.t_in, self.T, math.inf)

    def smash(self, t: float, slots: list[int], queue: list) -> None:
        self.plan.events.append({"t": 0.0, "kind": "smash", "slots": slots})
        ev, idx = self.plan.events[-1], len(self.plan.events) - 1
        grab = max(0.6, 2.0 / self.fps)   # a fast hand: in, grab, out
        durations = [0.8 + grab for _ in slots]
        start = self.hands.place(t, sum(durations) + HAND_GAP_S * len(slots))
        removals, pieces, hands = {}, {}, []
        for slot, d in zip(slots, durations):
            # The block is already held on the timeline: these visits go straight into the plan.
            reach = (d - grab) / 2
            v = Visit(start, start + reach, start + d - reach, start + d, slot, float(self.rng.uniform(0.15, 0.85)),
                      int(self.rng.integers(4)), idx)
            self.plan.visits.append(v)
            removals[slot] = self.snap((v.t_reach + v.t_leave) / 2)
            pieces[slot] = self.piece_at[slot]
            self.piece_at[slot] = None
            self.plan.changes.append(Change(removals[slot], slot, None))
            hands.append([round(v.t_in, 3), round(v.t_out, 3)])
            start += d + HAND_GAP_S
        if max(removals.values()) - min(removals.values()) > SMASH_WITHIN_S:
            raise ConfigError(f"--fps: at {self.fps:g} fps a smash-and-grab of {len(slots)} slots takes longer than "
                              f"{SMASH_WITHIN_S:g} s")
        ev.update({"t": min(removals.values()), "t_end": max(removals.values()), "removals": removals,
                   "pieces": pieces, "classes": {k: self.plan.pieces[p].cls for k, p in pieces.items()},
                   "hands": hands})
        for slot in slots:
            self._reserve(slot, hands[0][0], removals[slot] + self.grace + SEPARATION_S, math.inf)
            self.restock_later(slot, removals[slot], queue)

    def restock(self, t: float, slot: int) -> None:
        cls = self.classes[int(self.rng.integers(len(self.classes)))]
        pid = self.new_piece(cls)
        ev, v = self._touch("restock", t, slot, removal=False, extra={"class": cls, "piece": pid})
        self.piece_at[slot] = pid
        self.plan.changes.append(Change(ev["t"], slot, pid))
        enrol = self.snap(v.t_out + self.rng.uniform(2.0, 4.0))
        self.plan.actions.append({"t": enrol, "action": "enrol", "slot": slot, "after": "restock"})
        self._reserve(slot, v.t_in, enrol, enrol + self.grace + SEPARATION_S)

    def smash_slots(self, t: float) -> list[int] | None:
        """Three (or more) neighbouring slots with a piece, free at ``t``."""
        ok = self.eligible(t, "smash")
        if len(ok) < SMASH_SLOTS:
            return None
        cols = self.grid[1]
        first = ok[int(self.rng.integers(len(ok)))]
        r0, c0 = divmod(first, cols)
        near = sorted(ok, key=lambda k: (abs(k // cols - r0) * 2 + abs(k % cols - c0), k))
        return sorted(near[:SMASH_SLOTS])

    def slot_events(self) -> None:
        """Place the counted slot events at stratified times, then the restocks they call for."""
        hours = self.T / 3600.0
        queue: list[tuple[float, str, int | None]] = []
        for kind, per_hour in PER_HOUR.items():
            if kind == "hand_pass":
                continue
            n = max(1, math.ceil(per_hour * hours - 1e-9))
            lo, hi = OPENING_QUIET_S, self.alarm_end - (self.grace + 10.0 if kind == "lift_return" else 12.0)
            if kind == "sale":  # every sale leaves time for its restock, so a short day still has one
                hi = min(hi, self.T - RESTOCK_END_S - self.grace - RESTOCK_AFTER_S - 12.0)
            if hi <= lo:
                raise ConfigError(f"--minutes: {self.T / 60:g} min leaves no time for a {kind} before the last "
                                  f"{self.grace + SEPARATION_S:g} s (--grace-s {self.grace:g})")
            for i in range(n):
                queue.append((lo + (hi - lo) * (i + float(self.rng.uniform(0.05, 0.95))) / n, kind, None))
        while queue:
            queue.sort(key=lambda q: (q[0], q[1], -1 if q[2] is None else q[2]))
            t, kind, slot = queue.pop(0)
            if kind == "restock":
                self.restock(t, slot)
                continue
            t = self._when_free(t, kind, queue)
            if t is None:
                continue
            if kind == "smash":
                self.smash(t, self.smash_slots(t), queue)
                continue
            ok = self.eligible(t, kind)
            slot = ok[int(self.rng.integers(len(ok)))]
            if kind == "lift_return":
                self.lift_return(t, slot)
            elif kind == "swap":
                self.swap(t, slot)
            else:
                self.sale_or_theft(kind, t, slot, queue)
        self._check_alarm_window()

    def _when_free(self, t: float, kind: str, queue: list) -> float | None:
        """``t``, or the first time after it when enough slots are free for ``kind``; None when that waits
        for a restock still in the queue (the event is queued again behind it)."""
        need = SMASH_SLOTS if kind == "smash" else 1
        for cand in sorted({t, *(f for f in self.free_at if t < f < math.inf)}):
            if len(self.eligible(cand, kind)) >= need:
                return cand
        restocks = [q[0] for q in queue if q[1] == "restock"]
        if restocks:
            queue.append((min(restocks) + 1e-3, kind, None))
            return None
        raise ConfigError(f"--minutes: {self.T / 60:g} min is too short for the store day's events "
                          f"(no free slot for a {kind}; --grace-s {self.grace:g} keeps slots busy; "
                          "more --slots would help)")

    def _check_alarm_window(self) -> None:
        for ev in self.plan.events:
            last = ev.get("t_end", ev["t"])
            if ev["kind"] not in ("stock", "restock") and last > self.alarm_end:
                raise ConfigError(f"--minutes: {self.T / 60:g} min is too short: a {ev['kind']} would fall in the "
                                  f"last {self.grace + SEPARATION_S:g} s, where its alarm cannot be seen")
        kinds = {ev["kind"] for ev in self.plan.events}
        if "restock" not in kinds:
            raise ConfigError(f"--minutes: {self.T / 60:g} min is too short for a restock after a sale "
                              f"(it comes --grace-s + 15 s after)")

    def hand_passes(self) -> None:
        """Customers' hands over the case, at stratified times in the gaps between the other hands."""
        n = max(1, math.ceil(PER_HOUR["hand_pass"] * self.T / 3600.0 - 1e-9))
        lo, hi = OPENING_QUIET_S, self.T - 5.0
        for i in range(n):
            t = lo + (hi - lo) * (i + float(self.rng.uniform(0.0, 0.9))) / n
            self.plan.events.append({"t": 0.0, "kind": "hand_pass", "slots": []})
            ev = self.plan.events[-1]
            v = self.visit(t, 0, len(self.plan.events) - 1, self.dwell(0.3, 1.5))
            if v.t_out > self.T - 1.0:
                raise ConfigError(f"--minutes: {self.T / 60:g} min is too short for {n} hand passes")
            idle = [k for k in range(self.n_slots)
                    if not any(a < v.t_out and v.t_in < b for a, b in self.busy[k])]
            choice = idle or list(range(self.n_slots))
            v.slot = choice[int(self.rng.integers(len(choice)))]
            ev.update({"t": round(v.t_in, 3), "t_end": round(v.t_out, 3), "target": v.slot})


def plan_day(rng: np.random.Generator, grid: tuple[int, int], seconds: float, fps: float, grace: float,
             classes: list[str], photo_counts: dict[str, int] | None, frame: tuple[int, int],
             slot_rects: list[tuple[int, int, int, int]]) -> DayPlan:
    """Plan a whole day; raises :class:`ConfigError` (naming ``--minutes`` or ``--grace-s``) when it does not fit."""
    n_slots = grid[0] * grid[1]
    if n_slots < SMASH_SLOTS:
        raise ConfigError(f"--slots: a smash-and-grab takes {SMASH_SLOTS} slots, the grid has {n_slots}")
    p = _Planner(rng, n_slots, grid, seconds, fps, grace, classes, photo_counts)
    p.stock()
    p.slot_events()
    p.hand_passes()
    p.plan.ambient = plan_ambient(rng, seconds, OPENING_QUIET_S, frame, slot_rects)
    p.plan.visits.sort(key=lambda v: v.t_in)
    p.plan.changes.sort(key=lambda c: c.t)
    p.plan.actions.sort(key=lambda a: a["t"])
    return p.plan
