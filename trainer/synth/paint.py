"""Drawing primitives for synthetic jewelry: a premultiplied layer plus a coverage mask, metals, gems, chains.

Everything is drawn with OpenCV's anti-aliased primitives at sub-pixel precision (``shift``) onto a
black layer, which therefore holds colour premultiplied by coverage; the mask holds the coverage.
Compositing is then ``background * (1 - mask) + layer``: the whole item costs a handful of vectorised
array operations however many strokes it has.
"""
from __future__ import annotations

import logging
import math

import cv2
import numpy as np

logger = logging.getLogger(__name__)

_SHIFT = 4
_ONE = 1 << _SHIFT
AA = cv2.LINE_AA

# Metals as RGB: yellow, rose and white gold, silver, platinum, oxidised silver.
METALS_RGB = {
    "yellow": (222, 180, 84), "rose": (226, 152, 128), "white": (214, 214, 206),
    "silver": (192, 195, 200), "platinum": (228, 228, 232), "oxidised": (118, 116, 112),
}
# Gem body colours as RGB: diamond, ruby, sapphire, emerald, amethyst, citrine, aquamarine, topaz,
# pink sapphire, onyx, peridot, garnet.
GEMS_RGB = [(226, 232, 240), (200, 20, 50), (25, 50, 170), (20, 140, 70), (130, 60, 170), (235, 170, 30),
            (120, 200, 225), (60, 140, 220), (235, 120, 170), (25, 25, 30), (150, 200, 50), (120, 15, 30)]
PEARLS_RGB = [(236, 230, 218), (240, 224, 220), (222, 214, 190), (70, 70, 80), (250, 250, 246)]


def bgr(rgb, k: float = 1.0, add: float = 0.0) -> tuple[int, int, int]:
    """An RGB tuple scaled by ``k`` plus ``add``, clipped, as an OpenCV BGR colour."""
    return tuple(int(min(255, max(0, c * k + add))) for c in rgb[::-1])


class Metal:
    """The four tones a polished metal shows: shadow, body, lit side, specular."""

    def __init__(self, rgb, rng: np.random.Generator):
        rgb = [c * rng.uniform(0.9, 1.08) for c in rgb]
        self.dark = bgr(rgb, 0.42)
        self.mid = bgr(rgb, 0.85)
        self.light = bgr(rgb, 1.15, 30)
        self.spec = bgr((255, 255, 250))


def random_metal(rng: np.random.Generator) -> Metal:
    """A metal drawn from the palette (golds and silvers more often than oxidised)."""
    names = list(METALS_RGB)
    p = np.array([0.3, 0.15, 0.17, 0.2, 0.1, 0.08])
    return Metal(METALS_RGB[names[int(rng.choice(len(names), p=p))]], rng)


def _fix(pts) -> np.ndarray:
    return np.round(np.asarray(pts, np.float64) * _ONE).astype(np.int32)


def _fix_pt(c) -> tuple[int, int]:
    # One point, in plain Python: numpy's per-call overhead dominates for two numbers.
    return int(round(float(c[0]) * _ONE)), int(round(float(c[1]) * _ONE))


class Pose:
    """Maps item-local coordinates (pixels, y down, origin at the item centre) into the image."""

    def __init__(self, cx: float, cy: float, angle_deg: float, scale: float = 1.0):
        self.c = np.array([cx, cy])
        self.deg = angle_deg
        a = math.radians(angle_deg)
        self.m = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        self.scale = scale

    def __call__(self, pts) -> np.ndarray:
        pts = np.asarray(pts, np.float64)
        return pts @ self.m.T + self.c

    def vec(self, v) -> np.ndarray:
        """Rotate a direction (no translation)."""
        return np.asarray(v, np.float64) @ self.m.T


class Painter:
    """An item layer (BGR, premultiplied by coverage) and its coverage mask, both ``uint8``."""

    def __init__(self, size: int):
        self.size = size
        self.layer = np.zeros((size, size, 3), np.uint8)
        self.mask = np.zeros((size, size), np.uint8)

    def circle(self, c, r, color, thickness=-1, mask=True):
        r = max(0.5, float(r))
        cc = _fix_pt(c)
        cv2.circle(self.layer, cc, int(round(r * _ONE)), color, thickness, AA, _SHIFT)
        if mask:
            cv2.circle(self.mask, cc, int(round(r * _ONE)), 255, thickness, AA, _SHIFT)

    def ellipse(self, c, axes, angle, a0, a1, color, thickness=-1, mask=True):
        cc = _fix_pt(c)
        ax = (max(1, int(round(axes[0] * _ONE))), max(1, int(round(axes[1] * _ONE))))
        t = thickness if thickness < 0 else max(1, int(round(thickness)))
        cv2.ellipse(self.layer, cc, ax, float(angle), float(a0), float(a1), color, t, AA, _SHIFT)
        if mask:
            cv2.ellipse(self.mask, cc, ax, float(angle), float(a0), float(a1), 255, t, AA, _SHIFT)

    def poly(self, pts, color, mask=True):
        p = [_fix(pts)]
        cv2.fillPoly(self.layer, p, color, AA, _SHIFT)
        if mask:
            cv2.fillPoly(self.mask, p, 255, AA, _SHIFT)

    def lines(self, polylines, color, thickness, closed=False, mask=True):
        """Several polylines in one call (each an ``N x 2`` array)."""
        p = [_fix(q) for q in polylines]
        t = max(1, int(round(thickness)))
        cv2.polylines(self.layer, p, closed, color, t, AA, _SHIFT)
        if mask:
            cv2.polylines(self.mask, p, closed, 255, t, AA, _SHIFT)


# ---------------------------------------------------------------- shaded shapes

def tube_ellipse(p: Painter, c, axes, angle, t, metal: Metal, a0=0.0, a1=360.0):
    """A polished round wire bent into an ellipse arc: shadow rim, body, lit ridge, sparkle."""
    lx, ly = -0.22 * t, -0.25 * t
    p.ellipse(c, axes, angle, a0, a1, metal.dark, t)
    p.ellipse(c, axes, angle, a0, a1, metal.mid, max(1.0, 0.7 * t), mask=False)
    p.ellipse((c[0] + lx, c[1] + ly), axes, angle, a0, a1, metal.light, max(1.0, 0.3 * t), mask=False)


def tube_path(p: Painter, pts, t, metal: Metal, closed=False):
    """A polished wire along a path (same shading as :func:`tube_ellipse`)."""
    pts = np.asarray(pts)
    p.lines([pts], metal.dark, t, closed)
    p.lines([pts], metal.mid, max(1.0, 0.7 * t), closed, mask=False)
    p.lines([pts + np.array([-0.2 * t, -0.25 * t])], metal.light, max(1.0, 0.28 * t), closed, mask=False)


def sparkle(p: Painter, c, r, color=(255, 255, 255)):
    """A specular star: a bright dot with two crossing glints (what makes a gem read as a gem)."""
    r = max(1.0, r)
    c = np.asarray(c, np.float64)
    p.circle(c, 0.35 * r, color, mask=False)
    d = np.array([[r, 0.0], [0.0, r]])
    p.lines([np.stack([c - d[0], c + d[0]]), np.stack([c - d[1], c + d[1]])], color, 1, mask=False)


def gem(p: Painter, rng: np.random.Generator, c, r, color_rgb=None, cut: str | None = None, angle=0.0,
        metal: Metal | None = None, prongs: int | None = None, aspect: float = 1.0):
    """A faceted stone: crown facets shaded by the light direction, a table, a specular sparkle, prongs."""
    if r < 1.2:
        p.circle(c, max(0.8, r), bgr(color_rgb or GEMS_RGB[0], 1.1, 20))
        return
    color_rgb = color_rgb or GEMS_RGB[int(rng.integers(len(GEMS_RGB)))]
    cut = cut or ("round", "round", "princess", "emerald", "oval", "pear")[int(rng.integers(6))]
    n = {"round": 8, "princess": 4, "emerald": 8, "oval": 10, "pear": 10}[cut]
    th = np.linspace(0, 2 * np.pi, n, endpoint=False) + (np.pi / 4 if cut == "princess" else np.pi / n)
    rad = np.full(n, 1.0)
    if cut == "emerald":
        th = np.array([0.35, 1.22, 1.92, 2.79, 3.49, 4.36, 5.06, 5.93])
        rad = np.full(n, 1.0)
    ex, ey = np.cos(th) * rad, np.sin(th) * rad * aspect
    if cut == "pear":
        ey = ey * np.where(ey < 0, 1.45, 1.0)
        ex = ex * np.where(ey < 0, 1.0 - 0.5 * np.clip(-ey, 0, 1), 1.0)
    a = math.radians(angle)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    outer = (np.stack([ex, ey], 1) * r) @ rot.T + np.asarray(c)
    table = (np.stack([ex, ey], 1) * r * 0.52) @ rot.T + np.asarray(c)
    diamond = color_rgb == GEMS_RGB[0]
    if metal is not None:
        k = prongs if prongs is not None else (4 if n == 4 else 6)
        for i in range(k):
            j = (i * n) // k
            q = outer[j] + (outer[j] - np.asarray(c)) * 0.12
            p.circle(q, max(1.0, 0.16 * r), metal.mid)
    p.poly(outer, bgr(color_rgb, 0.45))
    light = math.radians(225.0)
    for i in range(n):
        mid = 0.5 * (th[i] + th[(i + 1) % n] + (2 * np.pi if i == n - 1 else 0)) + a
        shade = 0.55 + 0.55 * math.cos(mid - light) + rng.uniform(-0.15, 0.15)
        if diamond:
            shade = 0.35 + 0.75 * rng.random()
        quad = np.stack([outer[i], outer[(i + 1) % n], table[(i + 1) % n], table[i]])
        p.poly(quad, bgr(color_rgb, shade, 25 * shade), mask=False)
    p.poly(table, bgr(color_rgb, 0.95 if not diamond else 0.8, 35), mask=False)
    # Specular highlight up-left of the table: the brightest thing in a jewelry photo.
    hl = np.asarray(c) + np.array([-0.3 * r, -0.3 * r * aspect])
    sparkle(p, hl, 0.55 * r if diamond else 0.4 * r)


def pearl(p: Painter, c, r, rgb):
    """A lustrous sphere: rim, body, soft highlight, specular dot."""
    c = np.asarray(c, np.float64)
    p.circle(c, r, bgr(rgb, 0.55))
    p.circle(c - 0.12 * r, 0.82 * r, bgr(rgb, 0.9, 5), mask=False)
    p.circle(c - 0.3 * r, 0.4 * r, bgr(rgb, 1.05, 25), mask=False)
    p.circle(c - 0.38 * r, 0.14 * r + 0.4, (255, 255, 255), mask=False)


def chain(p: Painter, pts, w, metal: Metal, style: str = "cable"):
    """A chain along a path: a dark core with alternating lit links (three draw calls, any length)."""
    pts = np.asarray(pts, np.float64)
    if len(pts) < 2:
        return
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    dist = np.concatenate([[0.0], np.cumsum(seg)])
    step = max(1.5, (1.6 if style == "cable" else 1.0) * w)
    n = max(2, int(dist[-1] / step))
    s_ = np.linspace(0, dist[-1], n)
    q = np.stack([np.interp(s_, dist, pts[:, 0]), np.interp(s_, dist, pts[:, 1])], 1)
    p.lines([q], metal.dark, w)
    links = [q[i:i + 2] for i in range(0, n - 1, 2)]
    p.lines(links, metal.mid if style == "cable" else metal.light, max(1.0, 0.55 * w), mask=False)
    if w >= 2.5:
        off = np.array([-0.2 * w, -0.2 * w])
        glints = [np.stack([q[i] + off, q[i] + off * 0.2]) for i in range(1, n - 1, 2)]
        p.lines(glints, metal.light if style == "cable" else metal.spec, max(1.0, 0.3 * w), mask=False)


def lobster_clasp(p: Painter, c, r, angle, metal: Metal):
    """The clasp at a chain's end: an elongated loop plus a small jump ring."""
    p.ellipse(c, (1.4 * r, 0.8 * r), angle, 0, 360, metal.dark, -1)
    p.ellipse(c, (1.2 * r, 0.6 * r), angle, 0, 360, metal.mid, -1, mask=False)
    p.ellipse((c[0] - 0.3 * r, c[1] - 0.3 * r), (0.6 * r, 0.25 * r), angle, 0, 360, metal.light, -1, mask=False)


def ellipse_points(c, rx, ry, angle_deg, a0, a1, n) -> np.ndarray:
    """Points along an ellipse arc (degrees, image orientation), for chains and bead strings."""
    t = np.radians(np.linspace(a0, a1, n))
    a = math.radians(angle_deg)
    x, y = rx * np.cos(t), ry * np.sin(t)
    return np.stack([c[0] + x * math.cos(a) - y * math.sin(a), c[1] + x * math.sin(a) + y * math.cos(a)], 1)
