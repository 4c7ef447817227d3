"""How ``gemsight-edge listen`` shows what it receives: JSON lines, one line per message, or a live table."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

logger = logging.getLogger(__name__)

REDRAW_S = 0.1  # at most 10 redraws a second on a terminal


@dataclass
class Event:
    """One received message and the gaps it revealed (``(camera, first_missing, last_missing)``)."""

    kind: str
    camera: str | None
    msg: dict
    payload: bytes
    gaps: list[tuple[str, int, int]] = field(default_factory=list)
    from_snapshot: bool = False


# Control characters (C0, DEL, C1) and bidi overrides in what a publisher sent would drive the terminal
# (clear it, retitle it, reorder text): shown as visible escapes instead. JSON mode prints the payload as sent.
_UNPRINTABLE = {c: f"\\x{c:02x}" for c in [*range(32), *range(127, 160)]}
_UNPRINTABLE.update({c: f"\\u{c:04x}" for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]})
# A lone surrogate ("\\ud800" in the JSON) is a str no encoder writes: escaped too, or the first one would
# end `listen` with UnicodeEncodeError.
_UNPRINTABLE.update({c: f"\\u{c:04x}" for c in range(0xD800, 0xE000)})


def printable(text: str) -> str:
    """``text`` safe to write to a terminal: control characters, bidi overrides and lone surrogates escaped."""
    return text.translate(_UNPRINTABLE)


def _counts_text(counts: dict[str, int]) -> str:
    return " ".join(f"{k} {v}" for k, v in counts.items() if v) or "-"


def _items(counts: dict[str, int]) -> int:
    return sum(v for k, v in counts.items() if k not in ("empty", "unknown"))


class Renderer:
    """Shows events: JSON lines, one line per message (a pipe), or a table redrawn in place (a terminal).

    Events hold messages the :class:`~edge.link.listen.Listener` validated against their schemas, so
    every field read here has the type the schema promises.
    """

    def __init__(self, out: TextIO, mode: str) -> None:
        self.out, self.mode = out, mode
        self.latest: dict[str, dict] = {}
        self.status: dict[str, dict] = {}
        self.notes: list[str] = []
        self._drawn = 0.0

    def show(self, ev: Event) -> None:
        """Print or record one event (gaps are reported with it)."""
        notes = [f"GAP {cam}: missed seq {a}-{b} ({b - a + 1})" if b > a else f"GAP {cam}: missed seq {a}"
                 for cam, a, b in ev.gaps]
        if self.mode == "json":
            for n in notes:  # stdout stays pure JSON lines
                logger.warning("%s", n)
            self.out.write(ev.payload.decode("utf-8") + "\n")
            self.out.flush()
            return
        if self.mode == "lines":
            self.out.write("".join(printable(n) + "\n" for n in [*notes, self._line(ev)]))
            self.out.flush()
            return
        m = ev.msg
        if ev.kind == "labels":
            self.latest[ev.camera] = m
        elif ev.kind == "status":
            self.status[ev.camera] = m
            notes.append(self._line(ev))
        self.notes = (self.notes + notes)[-5:]
        if notes or time.monotonic() - self._drawn >= REDRAW_S:
            self._draw()

    def _line(self, ev: Event) -> str:
        m = ev.msg
        if ev.kind == "labels":
            counts = m.get("counts", {})
            slots = " ".join(f"{s.get('name')}={s.get('label')}{'*' if s.get('stable') else ''}"
                             for s in m.get("slots", []))
            snap = " (snapshot)" if ev.from_snapshot else ""
            return (f"{m.get('device')}/{ev.camera} seq {m.get('seq')}{snap} items {_items(counts)} "
                    f"[{_counts_text(counts)}] {slots}")
        if ev.kind == "status":
            return f"{m.get('device')}/{ev.camera} status {m.get('state')}: {m.get('detail', '')}"
        cams = " ".join(f"{c} seq {i.get('seq')} {i.get('state')}" for c, i in (m.get("cameras") or {}).items())
        return f"{m.get('device')} heartbeat uptime {m.get('uptime_s', 0):.0f} s {cams}".rstrip()

    def _draw(self) -> None:
        lines = ["gemsight listen  (* = stable over the smoothing window)", ""]
        for cam in sorted(set(self.latest) | set(self.status)):
            m = self.latest.get(cam, {})
            st = self.status.get(cam, {}).get("state", "?")
            lat = sum((m.get("latencies_ms") or {}).values())
            lines.append(f"{m.get('device', '')}/{cam}  seq {m.get('seq', '-')}  status {st}  "
                         f"latency {lat:.1f} ms  items {_items(m.get('counts', {}))}")
            for s in m.get("slots", []):
                star = "*" if s.get("stable") else " "
                lines.append(f"  {s.get('name', ''):<12} {s.get('label', ''):<12}{star} {s.get('score', 0):.2f}")
            lines.append(f"  counts: {_counts_text(m.get('counts', {}))}")
            lines.append("")
        lines += self.notes
        # Home + clear screen, then the whole table: simple and flicker is acceptable at 10 Hz.
        self.out.write("\x1b[H\x1b[2J" + "\n".join(map(printable, lines)) + "\n")
        self.out.flush()
        self._drawn = time.monotonic()

    def finish(self) -> None:
        """Final redraw of the table (no-op for the other modes)."""
        if self.mode == "table":
            self._draw()


def format_summary(summary: dict[str, dict[str, Any]], received: int, rejected: int = 0) -> str:
    """The exit summary: messages (and malformed ones skipped); per camera, seq range, missed and gap ranges."""
    lines = [f"summary: {received} messages" + (f", {rejected} malformed skipped" if rejected else "")]
    for cam, s in summary.items():
        gaps = ", ".join(f"{a}-{b}" if b > a else str(a) for a, b in s["gaps"][:20])
        more = " ..." if len(s["gaps"]) > 20 else ""
        lines.append(f"  {cam}: {s['received']} labels, seq {s['first_seq']}..{s['last_seq']}, "
                     f"{s['missed']} missed" + (f" in {len(s['gaps'])} gaps: {gaps}{more}" if s["missed"] else "")
                     + (f", {s['restarts']} publisher restarts" if s["restarts"] else ""))
    return "\n".join(lines) + "\n"
