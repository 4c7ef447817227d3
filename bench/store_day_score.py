"""Score a store day: a kiosk's incidents against the day's truth (``OUT.events.jsonl``).

    score(events, incidents, grace_s=30, video_seconds=3600)     # one case (one video)
    score_cases([(events, incidents), ...], grace_s=30)           # several cases, pooled
    format_table({"states": result, "categories": other})         # a text table, one column per result

An incident is ``{"kind": "missing"|"swapped"|"smash"|"camera"|"wrong"|..., "camera": str, "slot": str or
None (case-level), "opened_t": video seconds}``. The rules:

- a **theft** is detected by a ``missing`` (or ``smash``) incident on its slot opened within
  ``[removal, removal + grace + 10 s]``; time-to-alarm is counted from the removal;
- a **swap** is detected by a ``swapped`` incident on its slot within ``[removal, placed + grace + 10 s]``,
  time-to-alarm from the moment the other piece lies there; a ``missing`` one in that window is a
  *miscalled* swap (counted apart, not detected, not false);
- a **smash-and-grab** is detected by a ``smash`` incident (case-level or on one of its slots) within
  ``[first removal, last removal + 10 s]``; the ``missing`` incidents of its slots (each within its own
  removal's theft window) are part of it, not false;
- every other incident is **false**, and is put down to the nearest truth event within 5 s on its slot
  (a piece's own events, reaching on to the end of their alarm window, a hand passing over it, glare on
  it; then flicker and the nudge; then the lighting ramp), or ``none``. A sale's ``missing`` incident is
  false (the piece was marked sold), put down to ``sale``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

ALARM_EXTRA_S = 10.0   # an alarm counts up to this long after the grace
SMASH_EXTRA_S = 10.0   # a smash alarm counts up to this long after its last removal
NEAR_S = 5.0           # a false incident is put down to an event at most this far away
CASE_WIDE = ("flicker", "nudge", "lighting")
#: The causes the table always shows (others appear when they occur).
CAUSES = ("hand_pass", "lift_return", "lighting", "flicker", "nudge", "glare", "sale", "restock", "theft", "swap",
          "smash", "none")
PIECE_EVENTS = ("lift_return", "sale", "theft", "swap", "smash", "restock")
QUIET = ("hand_pass", "lift_return", "lighting", "nudge")   # must cause no incident at all


def load_events(path) -> list[dict]:
    """The truth lines of ``OUT.events.jsonl``."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def _check_incidents(incidents: Sequence[Mapping]) -> None:
    for i, inc in enumerate(incidents):
        if not isinstance(inc.get("kind"), str):
            raise ValueError(f"incident {i}: 'kind' must be a string, got {inc.get('kind')!r}")
        if inc.get("slot") is not None and not isinstance(inc["slot"], str):
            raise ValueError(f"incident {i}: 'slot' must be a slot name or None, got {inc['slot']!r}")
        t = inc.get("opened_t")
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
            raise ValueError(f"incident {i}: 'opened_t' must be video seconds, got {t!r}")


def _span(ev: Mapping) -> tuple[float, float]:
    """From the first hand in to the last hand out (or the event's own times)."""
    a, b = ev["t"], ev.get("t_end", ev["t"])
    for h0, h1 in ev.get("hands", []):
        a, b = min(a, h0), max(b, h1)
    return a, b


def _dist(t: float, a: float, b: float) -> float:
    return 0.0 if a <= t <= b else min(abs(t - a), abs(t - b))


def _cause(inc: Mapping, events: Sequence[Mapping], grace_s: float) -> str:
    """The kind of the truth event nearest to a false incident (see the module's rules), or ``none``.

    A piece's own event reaches on to the end of its alarm window (``grace + 10`` s after its last
    change), where an incident it provokes opens; between two events that both reach, the one whose own
    span is nearer wins.
    """
    t, slot = inc["opened_t"], inc.get("slot")
    best = None
    for ev in events:
        kind = ev.get("kind")
        if kind is None or kind in ("day", "stock"):
            continue
        a, b = _span(ev)
        core = _dist(t, a, b)
        if kind in PIECE_EVENTS:
            b = max(b, ev.get("t_end", ev["t"]) + grace_s + ALARM_EXTRA_S)
        dist = _dist(t, a, b)
        if dist > NEAR_S:
            continue
        if slot is None:
            tier = {"nudge": 0, "flicker": 0, "glare": 0, "lighting": 2}.get(kind, 1)
        elif slot in ev.get("slots", []) and kind not in CASE_WIDE:
            tier = 0
        elif slot in ev.get("hand_over", []):
            tier, kind = 0, "hand_pass"   # for this slot, a hand reaching past it
        elif kind in ("flicker", "nudge"):
            tier = 1
        elif kind == "lighting":
            tier = 2
        else:
            continue
        if best is None or (tier, dist, core) < best[0]:
            best = ((tier, dist, core), kind)
    return best[1] if best else "none"


def _in(inc: Mapping, kinds: Iterable[str], slots, lo: float, hi: float) -> bool:
    return inc["kind"] in kinds and inc.get("slot") in slots and lo - 1e-6 <= inc["opened_t"] <= hi + 1e-6


def _match_case(events: Sequence[Mapping], incidents: Sequence[Mapping], grace_s: float) -> dict:
    """Match one case's incidents; returns raw lists the totals are made from."""
    _check_incidents(incidents)
    matched = [False] * len(incidents)
    out = {"theft": [], "swap": [], "smash": [], "miscalled": 0, "false": [], "incidents": len(incidents)}
    window = grace_s + ALARM_EXTRA_S

    def take(pred) -> list[int]:
        hits = [i for i, inc in enumerate(incidents) if pred(inc)]
        for i in hits:
            matched[i] = True
        return hits

    for ev in events:
        kind = ev.get("kind")
        if kind == "theft":
            s, t = ev["slots"][0], ev["t"]
            hits = take(lambda inc: _in(inc, ("missing", "smash"), (s,), t, t + window))
            tta = min(incidents[i]["opened_t"] for i in hits) - t if hits else None
            out["theft"].append({"slot": s, "t": t, "detected": bool(hits), "tta": tta})
        elif kind == "swap":
            s, t, placed = ev["slots"][0], ev["t"], ev.get("t_end", ev["t"])
            hits = take(lambda inc: _in(inc, ("swapped",), (s,), t, placed + window))
            miss = take(lambda inc: _in(inc, ("missing",), (s,), t, placed + window))
            tta = min(incidents[i]["opened_t"] for i in hits) - placed if hits else None
            out["miscalled"] += int(bool(miss) and not hits)
            out["swap"].append({"slot": s, "t": t, "detected": bool(hits), "miscalled": bool(miss) and not hits,
                                "tta": tta})
        elif kind == "smash":
            slots = list(ev["slots"])
            removals = ev.get("removals") or {s: ev["t"] for s in slots}
            t0, t1 = min(removals.values()), max(removals.values())
            hits = take(lambda inc: _in(inc, ("smash",), [None, *slots], t0, t1 + SMASH_EXTRA_S))
            for s, r in removals.items():
                take(lambda inc, s=s, r=r: _in(inc, ("missing", "smash"), (s,), r, r + window))
            tta = min(incidents[i]["opened_t"] for i in hits) - t0 if hits else None
            out["smash"].append({"slots": slots, "t": t0, "detected": bool(hits), "tta": tta})
    for i, inc in enumerate(incidents):
        if not matched[i]:
            out["false"].append({**inc, "cause": _cause(inc, events, grace_s)})
    return out


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def _target(rows: list[dict]) -> dict:
    tta = [r["tta"] for r in rows if r["tta"] is not None]
    n, hit = len(rows), sum(r["detected"] for r in rows)
    return {"n": n, "detected": hit, "recall": round(hit / n, 4) if n else None, "tta_p50_s": _pct(tta, 50),
            "tta_p95_s": _pct(tta, 95), "tta_max_s": round(max(tta), 3) if tta else None}


def _video_seconds(events: Sequence[Mapping]) -> float:
    for ev in events:
        if ev.get("kind") == "day":
            return float(ev["seconds"])
    raise ValueError("video_seconds not given and the events have no 'day' line to read it from")


def score_cases(cases: Sequence[tuple], *, grace_s: float, video_seconds=None) -> dict:
    """Score several cases (videos) together.

    Args:
        cases: ``(events, incidents)`` pairs, one per video.
        grace_s: the grace the kiosk ran with.
        video_seconds: each video's length: one number for all, a list, or None to read each from its
            events' ``day`` line.

    Returns:
        A JSON-ready dict: ``cases``, ``case_hours``, ``incidents``, ``false`` (``total``, ``per_case_hour``,
        ``by_cause``, ``by_kind``, ``items``), ``theft``/``swap``/``smash`` (``n``, ``detected``, ``recall``,
        ``tta_p50_s``, ``tta_p95_s``, ``tta_max_s``; ``swap`` also ``miscalled``), ``missed`` and
        ``quiet`` (false incidents put down to a hand pass, a lift-and-return, the lighting or the nudge,
        and ``ok`` when there are none).

    Raises:
        ValueError: an incident without a kind, a slot name or None, or a time in seconds.
    """
    rows = {"theft": [], "swap": [], "smash": []}
    false: list[dict] = []
    seconds = 0.0
    n_incidents = miscalled = 0
    missed = []
    for k, (events, incidents) in enumerate(cases):
        if video_seconds is None:
            secs = _video_seconds(events)
        elif isinstance(video_seconds, (int, float)):
            secs = float(video_seconds)
        else:
            secs = float(video_seconds[k])
        seconds += secs
        got = _match_case(events, incidents, grace_s)
        for key in rows:
            rows[key] += got[key]
            missed += [{"case": k, "kind": key, **r} for r in got[key] if not r["detected"]]
        false += [{"case": k, **f} for f in got["false"]]
        n_incidents += got["incidents"]
        miscalled += got["miscalled"]
    hours = seconds / 3600.0
    by_cause = {c: 0 for c in CAUSES}
    by_kind: dict[str, int] = {}
    for f in false:
        by_cause[f["cause"]] = by_cause.get(f["cause"], 0) + 1
        by_kind[f["kind"]] = by_kind.get(f["kind"], 0) + 1
    quiet = {c: by_cause[c] for c in QUIET}
    swap = _target(rows["swap"])
    swap["miscalled"] = miscalled
    return {"cases": len(cases), "case_hours": round(hours, 4), "grace_s": grace_s, "incidents": n_incidents,
            "false": {"total": len(false), "per_case_hour": round(len(false) / hours, 4) if hours else None,
                      "by_cause": by_cause, "by_kind": by_kind, "items": false},
            "theft": _target(rows["theft"]), "swap": swap, "smash": _target(rows["smash"]), "missed": missed,
            "quiet": {**quiet, "ok": not any(quiet.values())}}


def score(events: Sequence[Mapping], incidents: Sequence[Mapping], *, grace_s: float,
          video_seconds: float) -> dict:
    """Score one case (one video); the same dict as :func:`score_cases`."""
    return score_cases([(events, incidents)], grace_s=grace_s, video_seconds=video_seconds)


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def format_table(results: Mapping[str, Mapping]) -> str:
    """A text table of scores, one column per named result (e.g. state-based beside category-based)."""
    names = list(results)
    causes = list(CAUSES) + sorted({c for r in results.values() for c in r["false"]["by_cause"]} - set(CAUSES))
    rows: list[tuple[str, list[str]]] = [
        ("case-hours", [_fmt(r["case_hours"]) for r in results.values()]),
        ("incidents", [_fmt(r["incidents"]) for r in results.values()]),
        ("false incidents", [_fmt(r["false"]["total"]) for r in results.values()]),
        ("false per case-hour", [_fmt(r["false"]["per_case_hour"]) for r in results.values()]),
    ]
    rows += [(f"  false from {c}", [_fmt(r["false"]["by_cause"].get(c, 0)) for r in results.values()])
             for c in causes]
    for key, label in (("theft", "theft"), ("swap", "swap"), ("smash", "smash-and-grab")):
        rows.append((f"{label} recall", [f"{_fmt(r[key]['recall'])} ({r[key]['detected']}/{r[key]['n']})"
                                         for r in results.values()]))
        if key == "swap":
            rows.append(("swap called missing", [_fmt(r["swap"]["miscalled"]) for r in results.values()]))
        rows.append((f"{label} time-to-alarm p50 / p95 s",
                     [f"{_fmt(r[key]['tta_p50_s'])} / {_fmt(r[key]['tta_p95_s'])}" for r in results.values()]))
    rows.append(("quiet (no incident from hand, lift, light, nudge)",
                 ["yes" if r["quiet"]["ok"] else "NO" for r in results.values()]))
    first = max(len(label) for label, _ in rows)
    widths = [max(len(n), *(len(v[i]) for _, v in rows)) for i, n in enumerate(names)]
    lines = [" " * first + "  " + "  ".join(n.rjust(w) for n, w in zip(names, widths))]
    lines += [label.ljust(first) + "  " + "  ".join(v.rjust(w) for v, w in zip(vals, widths)) for label, vals in rows]
    return "\n".join(lines)


#: What a removal's slot must come to read, per truth event kind.
DECIDED = {"theft": "empty", "sale": "empty", "smash": "empty", "swap": "changed"}


def decision_delays(events: Sequence[Mapping], frames: Iterable[tuple[float, Mapping[str, str]]]) -> dict:
    """How long after the hand that took (or swapped) a piece its slot first read what happened: ``empty``
    for a theft, a sale or each slot of a smash, ``changed`` for a swap. The edge's own decision time, before
    any kiosk rule (graces, confirmations): what a late alarm or a smash seen too slowly comes from.

    Args:
        events: the day's truth.
        frames: ``(video seconds, {slot: published state})`` for every frame played, in time order.

    Returns:
        ``{"n", "undecided", "median_s", "p95_s", "max_s", "by_kind": {kind: [...]}, "slowest": [...]}``;
        each delay is counted from the end of the hand that did it (the event time where none is given).
    """
    wanted = []   # (slot, removal time, hand out, kind)
    for ev in events:
        kind = ev.get("kind")
        if kind not in DECIDED:
            continue
        removals = ev.get("removals") or {s: ev["t"] for s in ev.get("slots", ())}
        hands = [tuple(h) for h in ev.get("hands") or ()]
        for slot, r in removals.items():
            out = min((h[1] for h in hands if h[1] >= r), default=r)
            wanted.append((slot, float(r), float(out), kind))
    first: dict[int, float] = {}
    for t, states in frames:
        for i, (slot, r, out, kind) in enumerate(wanted):
            if i not in first and t >= r and states.get(slot) == DECIDED[kind]:
                first[i] = t
    rows = [{"kind": k, "slot": s, "t": r, "delay_s": round(first[i] - out, 2)}
            for i, (s, r, out, k) in enumerate(wanted) if i in first]
    delays = sorted(row["delay_s"] for row in rows)
    return {"n": len(wanted), "undecided": len(wanted) - len(rows),
            "median_s": float(np.median(delays)) if delays else None,
            "p95_s": float(np.percentile(delays, 95)) if delays else None,
            "max_s": delays[-1] if delays else None,
            "by_kind": {k: sorted(row["delay_s"] for row in rows if row["kind"] == k) for k in DECIDED},
            "slowest": sorted(rows, key=lambda row: -row["delay_s"])[:5]}
