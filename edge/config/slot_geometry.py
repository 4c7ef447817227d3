"""Where two slots of a camera overlap: the rule a slot map must pass.

Two slots may touch (share an edge or a corner) but not overlap: a piece lying in the shared area
would be counted twice. Overlap is the area the two *shapes* share, in normalised frame units; a
rect is its four corners, a polygon is taken as its convex hull (exact for the convex quadrilaterals
a slanted camera view gives; for a concave polygon the hull is a little larger, so the check errs on
the side of refusing). Areas up to :data:`TOUCH_AREA` (far below one pixel of any camera) count as
touching, so edges computed in floating point do not trip it.
"""
from __future__ import annotations

from typing import Iterable, Protocol, Sequence

Point = tuple[float, float]

TOUCH_AREA = 1e-9


class _Slot(Protocol):
    name: str
    rect: tuple[float, float, float, float] | None
    polygon: tuple[Point, ...] | None


def _cross(o: Point, a: Point, b: Point) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def convex_hull(points: Iterable[Point]) -> list[Point]:
    """The convex hull, counter-clockwise, without repeated or collinear points (Andrew's monotone chain)."""
    pts = sorted(set(points))
    if len(pts) < 3:
        return pts
    lower: list[Point] = []
    upper: list[Point] = []
    for seq, out in ((pts, lower), (reversed(pts), upper)):
        for p in seq:
            while len(out) >= 2 and _cross(out[-2], out[-1], p) <= 0:
                out.pop()
            out.append(p)
    return lower[:-1] + upper[:-1]


def area(poly: Sequence[Point]) -> float:
    """Area of a simple polygon (shoelace formula; 0 for fewer than 3 points)."""
    n = len(poly)
    return abs(sum(poly[i][0] * poly[(i + 1) % n][1] - poly[(i + 1) % n][0] * poly[i][1] for i in range(n))) / 2


def _clip(subject: list[Point], clip: list[Point]) -> list[Point]:
    """``subject`` clipped to the convex counter-clockwise polygon ``clip`` (Sutherland-Hodgman)."""
    out = subject
    for i in range(len(clip)):
        a, b = clip[i], clip[(i + 1) % len(clip)]
        src, out = out, []
        for j in range(len(src)):
            p, q = src[j], src[(j + 1) % len(src)]
            p_in, q_in = _cross(a, b, p) >= 0, _cross(a, b, q) >= 0
            if p_in:
                out.append(p)
            if p_in != q_in:
                d = (q[0] - p[0], q[1] - p[1])
                denom = (b[0] - a[0]) * d[1] - (b[1] - a[1]) * d[0]
                if denom:
                    t = ((a[0] - p[0]) * (b[1] - a[1]) - (a[1] - p[1]) * (b[0] - a[0])) / -denom
                    out.append((p[0] + t * d[0], p[1] + t * d[1]))
        if not out:
            break
    return out


def shape(slot: _Slot) -> list[Point]:
    """The slot's shape as a convex counter-clockwise polygon (its polygon's hull, else its rect)."""
    if slot.polygon:
        return convex_hull((float(x), float(y)) for x, y in slot.polygon)
    x0, y0, x1, y1 = slot.rect or (0.0, 0.0, 0.0, 0.0)
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def overlap_area(a: _Slot, b: _Slot) -> float:
    """The area two slots share, in normalised frame units (0 when they only touch)."""
    sa, sb = shape(a), shape(b)
    if len(sa) < 3 or len(sb) < 3:
        return 0.0
    return area(_clip(sa, sb))


def overlapping_pairs(slots: Sequence[_Slot], limit: int = 10) -> list[tuple[str, str, float]]:
    """Pairs of slots that overlap, as ``(name, name, shared area)``, at most ``limit`` of them.

    Slots are swept left to right by their rects, so only neighbours whose rects meet are compared.
    """
    order = sorted((s for s in slots if s.rect is not None), key=lambda s: s.rect[0])
    found: list[tuple[str, str, float]] = []
    for i, a in enumerate(order):
        for b in order[i + 1:]:
            if b.rect[0] >= a.rect[2]:
                break  # sorted by left edge: no later slot reaches back into a
            if b.rect[1] >= a.rect[3] or a.rect[1] >= b.rect[3]:
                continue
            shared = overlap_area(a, b)
            if shared > TOUCH_AREA:
                found.append((a.name, b.name, shared))
                if len(found) >= limit:
                    return found
    return found


def check_slot_map(slots: Sequence[_Slot], whole_frame: str) -> None:
    """The rules for a camera's slot map as a whole: at least one slot, no two overlapping.

    An empty list is refused rather than read as "the whole frame": leave ``slots`` out for that
    (the config then makes one slot named ``whole_frame``).

    Raises:
        ValueError: naming the rule and the slots that break it (pydantic turns it into a field error).
    """
    if not slots:
        raise ValueError(f"`slots` lists no slot; leave `slots` out to classify the whole frame as one slot "
                         f"(or write it: [{{name: {whole_frame}, rect: [0, 0, 1, 1]}}])")
    pairs = overlapping_pairs(slots)
    if pairs:
        raise ValueError("slots overlap: " + ", ".join(f"'{a}' and '{b}' ({100 * shared:.3g}% of the frame)"
                                                      for a, b, shared in pairs)
                         + "; slots may touch but not share area (a piece there would count twice)")
