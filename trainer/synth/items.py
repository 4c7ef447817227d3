"""One drawing function per jewelry class, built from :mod:`trainer.synth.paint` primitives.

Each drawer gets a :class:`Painter`, the generator and the slot size ``s`` and draws one item with a
random pose, scale, metal and stones. Scales are chosen so the classes stay apart for a person at
64 px: rings are single and thick-banded, earrings come in pairs, necklaces are open strands with no
focal piece, pendants have one, bracelets are closed loops, brooches are chainless clusters, watches
have a dial and straps.
"""
from __future__ import annotations

import logging
import math

import numpy as np

from trainer.synth.paint import (GEMS_RGB, METALS_RGB, PEARLS_RGB, Metal, Painter, Pose, bgr, chain,
                                 ellipse_points, gem, lobster_clasp, pearl, random_metal, sparkle, tube_ellipse,
                                 tube_path)

logger = logging.getLogger(__name__)


def _pick(rng: np.random.Generator, options, p=None):
    return options[int(rng.choice(len(options), p=p))]


def _centre(rng: np.random.Generator, s: int, spread: float = 0.08) -> tuple[float, float]:
    cx, cy = s * (0.5 + rng.uniform(-spread, spread, 2))
    return float(cx), float(cy)


def _gem_colour(rng: np.random.Generator):
    # Diamonds are the commonest stone in a case.
    return GEMS_RGB[0] if rng.random() < 0.4 else GEMS_RGB[int(rng.integers(1, len(GEMS_RGB)))]


def draw_ring(p: Painter, rng: np.random.Generator, s: int) -> None:
    """A single finger ring, mostly upright: thick band in perspective, usually a stone on top."""
    metal = random_metal(rng)
    # Rings stay well under half the slot and bracelets well over it: the camera's scale is fixed.
    R = s * rng.uniform(0.13, 0.2)
    k = rng.uniform(0.35, 0.85)
    t = R * rng.uniform(0.2, 0.3)
    cx, cy = _centre(rng, s)
    cy += 0.08 * R
    ang = rng.uniform(-30, 30) if rng.random() < 0.8 else rng.uniform(0, 360)
    pose = Pose(cx, cy, ang)
    style = _pick(rng, ["solitaire", "halo", "band", "eternity"], [0.55, 0.15, 0.12, 0.18])
    # Far side of the band first (darker), then the near side, so the ring reads as a hoop in space.
    back = Metal(METALS_RGB["silver"], rng)
    back.dark, back.mid, back.light = metal.dark, bgr(np.array(metal.mid[::-1]) * 0.8), metal.mid
    tube_ellipse(p, (cx, cy), (R, R * k), ang, t * 0.9, back, 180, 360)
    tube_ellipse(p, (cx, cy), (R, R * k), ang, t, metal, 0, 180)
    top = pose([0.0, -R * k])
    if style in ("solitaire", "halo"):
        g = R * rng.uniform(0.34, 0.55)
        head = pose([0.0, -R * k - 0.55 * g])
        p.poly(pose([[-0.45 * g, -R * k + 0.2 * t], [0.45 * g, -R * k + 0.2 * t], [0.2 * g, -R * k - 0.6 * g],
                     [-0.2 * g, -R * k - 0.6 * g]]), metal.mid)
        if style == "halo":
            for a in np.linspace(0, 2 * np.pi, 12, endpoint=False):
                q = head + 1.25 * g * np.array([math.cos(a), math.sin(a)])
                p.circle(q, 0.22 * g, bgr(GEMS_RGB[0], 1.0, 10))
                p.circle(q - 0.06 * g, 0.08 * g + 0.3, (255, 255, 255), mask=False)
        gem(p, rng, head, g, _gem_colour(rng), angle=ang, metal=metal)
    elif style == "eternity":
        col = _gem_colour(rng)
        for a in np.linspace(25, 155, 7):
            q = ellipse_points((cx, cy), R, R * k, ang, a, a, 1)[0]
            p.circle(q, 0.42 * t, bgr(col, 0.8, 10), mask=False)
            p.circle(q - 0.12 * t, 0.15 * t + 0.3, (255, 255, 255), mask=False)
    else:
        p.ellipse(top + np.array([-0.1 * t, -0.2 * t]), (0.5 * R, 0.12 * t), ang, 0, 360, metal.spec, -1,
                  mask=False)


def _one_earring(p: Painter, rng: np.random.Generator, c, e: float, style: str, metal: Metal, col, ang):
    c = np.asarray(c, np.float64)
    pose = Pose(c[0], c[1], ang)
    if style == "hoop":
        r, k, t = e * 1.35, 1.0, max(1.5, e * 0.22)
        tube_ellipse(p, c + pose.vec([0, r]), (r, r * k), ang, t, metal, -80, 260)
        p.circle(c, 0.6 * t, metal.mid)
    elif style == "stud":
        if col is None:
            pearl(p, c, 0.75 * e, PEARLS_RGB[0])
        else:
            gem(p, rng, c, 0.75 * e, col, cut="round", metal=metal, prongs=4)
    else:  # drop: stud, short chain, stone or pearl below.
        gem(p, rng, c, 0.35 * e, GEMS_RGB[0], cut="round", metal=metal, prongs=4)
        bottom = c + pose.vec([0, 1.6 * e])
        chain(p, np.stack([c, bottom]), max(1.0, 0.12 * e), metal)
        if col is None:
            pearl(p, bottom + pose.vec([0, 0.55 * e]), 0.6 * e, PEARLS_RGB[1])
        else:
            gem(p, rng, bottom + pose.vec([0, 0.6 * e]), 0.6 * e, col, cut="pear", angle=ang + 180, metal=metal,
                prongs=3)


def draw_earring(p: Painter, rng: np.random.Generator, s: int) -> None:
    """A matched pair (the cue that tells a hoop earring from a ring): hoops, studs or drops."""
    metal = random_metal(rng)
    style = _pick(rng, ["hoop", "stud", "drop"], [0.4, 0.25, 0.35])
    e = s * (rng.uniform(0.07, 0.1) if style == "hoop" else rng.uniform(0.07, 0.11))
    cx, cy = _centre(rng, s, 0.03)
    if style in ("hoop", "drop"):
        cy -= 1.0 * e
    ang = rng.uniform(-15, 15)
    # Half the distance between the pair: both earrings stay inside the slot.
    gap = s * rng.uniform(0.14, 0.18) + (1.35 * e if style == "hoop" else 0.4 * e)
    d = np.array([math.cos(math.radians(ang)), math.sin(math.radians(ang))]) * gap
    if rng.random() < 0.3:  # a display card behind the pair
        card = _pick(rng, [(245, 245, 240), (25, 25, 28), (200, 170, 130)])
        w, h = gap + 2.0 * e, (4.0 if style != "stud" else 2.4) * e
        card_pose = Pose(cx, cy + (1.3 * e if style != "stud" else 0.0), ang)
        p.poly(card_pose([[-w, -h / 2], [w, -h / 2], [w, h / 2], [-w, h / 2]]), bgr(card))
    col = None if rng.random() < 0.25 else _gem_colour(rng)
    for side in (-1, 1):
        _one_earring(p, rng, np.array([cx, cy]) + side * d, e, style, metal, col, ang)


def draw_necklace(p: Painter, rng: np.random.Generator, s: int) -> None:
    """An open strand: chain, pearls, a tennis line or graduated stations, with a clasp; no focal piece."""
    metal = random_metal(rng)
    style = _pick(rng, ["chain", "pearls", "tennis", "stations"], [0.35, 0.25, 0.2, 0.2])
    cx, cy = _centre(rng, s, 0.06)
    rx, ry = s * rng.uniform(0.34, 0.46), s * rng.uniform(0.32, 0.44)
    ang = rng.uniform(-20, 20)
    hanging = rng.random() < 0.5
    if hanging:  # hangs from a bust above the slot: a U whose ends leave the top edge
        a0, a1 = -30.0, 210.0
        cy -= 0.35 * ry
    else:  # lying on the tray: an open loop with the clasp ends showing
        a0 = rng.uniform(-140, -60)
        a1 = a0 + rng.uniform(250, 300)
    pts = ellipse_points((cx, cy), rx, ry, ang, a0, a1, 120)
    wobble = rng.normal(0, 1, 4)
    tt = np.linspace(0, 1, len(pts))
    pts += (s * 0.015) * np.stack([wobble[0] * np.sin(3 * np.pi * tt),
                                   wobble[1] * np.sin(2 * np.pi * tt + wobble[2])], 1)
    if style == "pearls":
        r = s * rng.uniform(0.022, 0.034)
        idx = np.linspace(0, len(pts) - 1, max(6, int(_length(pts) / (2.05 * r)))).astype(int)
        rgb = PEARLS_RGB[int(rng.integers(len(PEARLS_RGB)))]
        for i in idx:
            pearl(p, pts[i], r, rgb)
    else:
        w = s * (rng.uniform(0.016, 0.03) if style != "tennis" else rng.uniform(0.02, 0.032))
        chain(p, pts, max(1.2, w), metal, "cable" if style != "tennis" else "box")
        if style == "tennis":
            col = _gem_colour(rng)
            idx = np.linspace(0, len(pts) - 1, max(6, int(_length(pts) / (1.3 * w))))[1:-1].astype(int)
            for i in idx[::2]:
                p.circle(pts[i], 0.55 * w, bgr(col, 1.0, 30), mask=False)
        elif style == "stations":
            col = _gem_colour(rng)
            n = int(rng.integers(5, 10))
            for j, i in enumerate(np.linspace(0.25, 0.75, n)):
                q = pts[int(i * (len(pts) - 1))]
                gem(p, rng, q, s * (0.022 + 0.012 * (1 - abs(j / (n - 1) - 0.5) * 2)), col, cut="round", metal=metal)
    if not hanging:
        for end, nxt in ((pts[0], pts[2]), (pts[-1], pts[-3])):
            d = end - nxt
            lobster_clasp(p, end, s * 0.02, math.degrees(math.atan2(d[1], d[0])), metal)


def _length(pts: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(pts, axis=0), axis=1).sum())


def draw_pendant(p: Painter, rng: np.random.Generator, s: int) -> None:
    """One focal ornament on a bail, on a fine chain running out of the slot's top edge."""
    metal = random_metal(rng)
    rp = s * rng.uniform(0.1, 0.16)
    cx, cy = _centre(rng, s, 0.07)
    cy += s * rng.uniform(0.02, 0.1)
    ang = rng.uniform(-15, 15)
    pose = Pose(cx, cy, ang)
    bail = pose([0, -rp * 1.25])
    # A pendant always hangs on its chain (without one it would read as a brooch).
    w = max(1.2, s * rng.uniform(0.008, 0.014))
    spread = s * rng.uniform(0.15, 0.35)
    for side in (-1, 1):
        mid = bail + np.array([side * spread * 0.55, -s * rng.uniform(0.08, 0.18)])
        end = np.array([bail[0] + side * spread, -s * 0.05])
        t = np.linspace(0, 1, 24)[:, None]
        path = (1 - t) ** 2 * bail + 2 * (1 - t) * t * mid + t ** 2 * end
        chain(p, path, w, metal)
    tube_ellipse(p, bail, (0.22 * rp, 0.3 * rp), ang, max(1.5, 0.12 * rp), metal)
    style = _pick(rng, ["bezel", "heart", "cross", "coin", "drop"], [0.35, 0.15, 0.15, 0.15, 0.2])
    c = np.array([cx, cy])
    if style == "bezel":
        col = _gem_colour(rng)
        aspect = rng.uniform(1.0, 1.35)
        p.ellipse(c, (1.12 * rp, 1.12 * rp * aspect), ang, 0, 360, metal.dark, -1)
        p.ellipse(c, (1.05 * rp, 1.05 * rp * aspect), ang, 0, 360, metal.mid, -1, mask=False)
        gem(p, rng, c, 0.92 * rp, col, cut=_pick(rng, ["round", "oval", "emerald"]), angle=ang + 90 * (aspect > 1.15),
            aspect=1.0)
    elif style == "heart":
        t = np.linspace(0, 2 * np.pi, 40)
        hx = 16 * np.sin(t) ** 3
        hy = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        pts = pose(np.stack([hx, hy], 1) * rp / 15.0)
        p.poly(pts, metal.dark)
        p.poly(pose(np.stack([hx, hy], 1) * rp / 17.5 - [0.08 * rp, 0.08 * rp]), metal.mid, mask=False)
        p.ellipse(pose([-0.4 * rp, -0.35 * rp]), (0.3 * rp, 0.15 * rp), ang - 40, 0, 360, metal.light, -1, mask=False)
        if rng.random() < 0.5:
            gem(p, rng, c, 0.35 * rp, _gem_colour(rng), cut="round", metal=metal)
    elif style == "cross":
        a, b = 0.28 * rp, 1.15 * rp
        for arm in ([[-a, -b], [a, -b], [a, b * 1.2], [-a, b * 1.2]],
                    [[-0.8 * b, -a - 0.3 * rp], [0.8 * b, -a - 0.3 * rp], [0.8 * b, a - 0.3 * rp],
                     [-0.8 * b, a - 0.3 * rp]]):
            p.poly(pose(arm), metal.mid)
        tube_path(p, pose([[0, -b], [0, b * 1.2]]), 0.5 * a, metal)
        col = _gem_colour(rng)
        for q in ([0, -0.3 * rp], [0, -0.8 * rp], [0, 0.3 * rp], [0, 0.8 * rp],
                  [-0.55 * b, -0.3 * rp], [0.55 * b, -0.3 * rp]):
            p.circle(pose(q), 0.45 * a, bgr(col, 1.0, 25), mask=False)
    elif style == "coin":
        p.circle(c, rp, metal.dark)
        p.circle(c - 0.05 * rp, 0.9 * rp, metal.mid, mask=False)
        p.circle(c, 0.72 * rp, metal.dark, 1, mask=False)
        n = int(rng.integers(5, 9))
        star = [pose([(0.55 if i % 2 == 0 else 0.25) * rp * math.sin(i * math.pi / n),
                      -(0.55 if i % 2 == 0 else 0.25) * rp * math.cos(i * math.pi / n)]) for i in range(2 * n)]
        p.poly(np.array(star), metal.light, mask=False)
        sparkle(p, c - 0.5 * rp, 0.3 * rp)
    else:  # drop: a large pear stone or pearl hanging from the bail
        if rng.random() < 0.6:
            gem(p, rng, c, rp, _gem_colour(rng), cut="pear", angle=ang + 180, metal=metal, prongs=3)
        else:
            pearl(p, c, 0.85 * rp, PEARLS_RGB[int(rng.integers(len(PEARLS_RGB)))])


def draw_bracelet(p: Painter, rng: np.random.Generator, s: int) -> None:
    """A closed loop lying on the tray: bangle, chunky links, tennis line or beads."""
    metal = random_metal(rng)
    cx, cy = _centre(rng, s, 0.05)
    rx = s * rng.uniform(0.3, 0.4)
    ry = rx * rng.uniform(0.65, 1.0)
    ang = rng.uniform(0, 180)
    style = _pick(rng, ["bangle", "links", "tennis", "beads"], [0.3, 0.3, 0.2, 0.2])
    if style == "bangle":
        t = s * rng.uniform(0.04, 0.075)
        tube_ellipse(p, (cx, cy), (rx, ry), ang, t, metal)
        if rng.random() < 0.4:
            col = _gem_colour(rng)
            for q in ellipse_points((cx, cy), rx, ry, ang, 0, 360, 13)[:-1]:
                p.circle(q, 0.28 * t, bgr(col, 1.0, 25), mask=False)
                p.circle(q - 0.1 * t, 0.1 * t + 0.3, (255, 255, 255), mask=False)
    elif style == "links":
        w = s * rng.uniform(0.028, 0.045)
        n = max(10, int(2 * math.pi * math.sqrt((rx * rx + ry * ry) / 2) / (1.7 * w)))
        pts = ellipse_points((cx, cy), rx, ry, ang, 0, 360, n + 1)[:-1]
        for i, q in enumerate(pts):
            d = pts[(i + 1) % n] - pts[i - 1]
            a = math.degrees(math.atan2(d[1], d[0]))
            if i % 2 == 0:
                tube_ellipse(p, q, (1.05 * w, 0.62 * w), a, max(1.2, 0.42 * w), metal)
            else:
                tube_ellipse(p, q, (1.0 * w, 0.25 * w), a, max(1.2, 0.38 * w), metal)
    elif style == "tennis":
        w = s * rng.uniform(0.022, 0.032)
        pts = ellipse_points((cx, cy), rx, ry, ang, 0, 360, 100)
        p.lines([pts], metal.dark, 2.3 * w)
        p.lines([pts], metal.mid, 1.9 * w, mask=False)
        col = _gem_colour(rng)
        n = max(12, int(_length(pts) / (2.1 * w)))
        for q in ellipse_points((cx, cy), rx, ry, ang, 0, 360, n + 1)[:-1]:
            p.circle(q, 0.85 * w, bgr(col, 0.6, 10), mask=False)
            p.circle(q - 0.15 * w, 0.55 * w, bgr(col, 1.0, 40), mask=False)
            p.circle(q - 0.3 * w, 0.2 * w + 0.3, (255, 255, 255), mask=False)
    else:
        r = s * rng.uniform(0.03, 0.045)
        n = max(10, int(2 * math.pi * math.sqrt((rx * rx + ry * ry) / 2) / (2.05 * r)))
        rgb = PEARLS_RGB[int(rng.integers(len(PEARLS_RGB)))] if rng.random() < 0.5 else _gem_colour(rng)
        for q in ellipse_points((cx, cy), rx, ry, ang, 0, 360, n + 1)[:-1]:
            pearl(p, q, r, rgb)


def draw_brooch(p: Painter, rng: np.random.Generator, s: int) -> None:
    """A chainless cluster: flower, star, bow or bar, set with several stones."""
    metal = random_metal(rng)
    R = s * rng.uniform(0.17, 0.26)
    cx, cy = _centre(rng, s, 0.07)
    ang = rng.uniform(0, 360)
    pose = Pose(cx, cy, ang)
    c = np.array([cx, cy])
    style = _pick(rng, ["flower", "star", "bow", "bar"], [0.35, 0.25, 0.2, 0.2])
    col, col2 = _gem_colour(rng), _gem_colour(rng)
    if style == "flower":
        n = int(rng.integers(5, 9))
        for i in range(n):
            a = ang + i * 360.0 / n
            q = c + 0.55 * R * np.array([math.cos(math.radians(a)), math.sin(math.radians(a))])
            p.ellipse(q, (0.5 * R, 0.26 * R), a, 0, 360, metal.dark, -1)
            p.ellipse(q - 0.03 * R, (0.42 * R, 0.19 * R), a, 0, 360, metal.mid, -1, mask=False)
            p.circle(q, 0.14 * R, bgr(col2, 0.9, 20), mask=False)
        gem(p, rng, c, 0.3 * R, col, cut="round", metal=metal)
    elif style == "star":
        n = int(rng.integers(5, 9))
        tips = [pose([R * math.cos(2 * math.pi * i / n), R * math.sin(2 * math.pi * i / n)]) for i in range(n)]
        tube_path(p, np.array([x for q in tips for x in (c, q)]), max(1.5, 0.12 * R), metal)
        for q in tips:
            gem(p, rng, q, 0.16 * R, col2, cut="round")
        gem(p, rng, c, 0.28 * R, col, cut="round", metal=metal)
    elif style == "bow":
        for side in (-1, 1):
            loop = pose([[0, 0], [side * R, -0.7 * R], [side * 1.1 * R, 0.6 * R]])
            p.poly(loop, metal.dark)
            p.poly(pose([[side * 0.15 * R, 0], [side * 0.85 * R, -0.45 * R], [side * 0.9 * R, 0.35 * R]]), metal.mid,
                   mask=False)
            tube_path(p, pose([[side * 0.1 * R, 0.1 * R], [side * 0.5 * R, 1.0 * R]]), 0.18 * R, metal)
        gem(p, rng, c, 0.25 * R, col, cut="princess", angle=ang, metal=metal)
    else:  # bar: a straight bar set with a row of stones, a larger one in the middle
        L, h = 1.3 * R, 0.2 * R
        p.poly(pose([[-L, -h], [L, -h], [L, h], [-L, h]]), metal.dark)
        tube_path(p, pose([[-L, 0], [L, 0]]), 1.3 * h, metal)
        for x in np.linspace(-0.85 * L, 0.85 * L, 7):
            if abs(x) > 0.2 * L:
                gem(p, rng, pose([x, 0.0]), 0.8 * h, col2, cut="round")
        gem(p, rng, c, 0.4 * R, col, cut="oval", angle=ang + 90, metal=metal)


def draw_watch(p: Painter, rng: np.random.Generator, s: int) -> None:
    """A wristwatch: case, dial with indices and hands, crown, straps leaving the slot."""
    metal = random_metal(rng)
    R = s * rng.uniform(0.13, 0.19)
    cx, cy = _centre(rng, s, 0.06)
    ang = rng.uniform(0, 360)  # watches lie every way in a case (upright-only ones left sideways ones rare)
    pose = Pose(cx, cy, ang)
    c = np.array([cx, cy])
    W = R * rng.uniform(1.05, 1.35)
    strap_len = s * 0.75
    metal_strap = rng.random() < 0.4
    strap_rgb = _pick(rng, [(40, 26, 18), (20, 20, 22), (150, 96, 56), (30, 40, 70), (90, 20, 25)])
    for side in (-1, 1):
        quad = pose([[-W / 2, side * 0.6 * R], [W / 2, side * 0.6 * R], [0.42 * W, side * strap_len],
                     [-0.42 * W, side * strap_len]])
        if metal_strap:
            p.poly(quad, metal.mid)
            rows = [pose([[-0.45 * W, side * y], [0.45 * W, side * y]]) for y in np.arange(R, strap_len, 0.28 * R)]
            p.lines(rows, metal.dark, max(1.0, 0.06 * R), mask=False)
            p.lines([pose([[x, side * R], [x, side * strap_len]]) for x in (-0.15 * W, 0.15 * W)], metal.light,
                    max(1.0, 0.05 * R), mask=False)
        else:
            p.poly(quad, bgr(strap_rgb))
            stitch = [pose([[x, side * (R + y)], [x, side * (R + y + 0.1 * R)]])
                      for x in (-0.38 * W, 0.38 * W) for y in np.arange(0, strap_len - R, 0.2 * R)]
            p.lines(stitch, bgr(strap_rgb, 1.6, 40), 1, mask=False)
    round_case = rng.random() < 0.7
    dial = _pick(rng, [(240, 238, 230), (20, 22, 26), (30, 50, 110), (210, 190, 140), (60, 70, 60)])
    p.poly(pose([[1.0 * R, -0.16 * R], [1.25 * R, -0.16 * R], [1.25 * R, 0.16 * R], [1.0 * R, 0.16 * R]]), metal.mid)
    if round_case:
        p.circle(c, R * 1.08, metal.dark)
        p.circle(c - 0.04 * R, R * 1.0, metal.mid, mask=False)
        p.ellipse(c, (R, R), ang, 200, 290, metal.light, max(1.0, 0.1 * R), mask=False)
        p.circle(c, R * 0.84, bgr(dial), mask=False)
    else:
        h = 1.08 * R
        p.poly(pose([[-h, -h], [h, -h], [h, h], [-h, h]]), metal.dark)
        p.poly(pose([[-0.96 * h, -0.98 * h], [0.92 * h, -0.98 * h], [0.92 * h, 0.9 * h], [-0.96 * h, 0.9 * h]]),
               metal.mid, mask=False)
        p.poly(pose([[-0.78 * h, -0.78 * h], [0.78 * h, -0.78 * h], [0.78 * h, 0.78 * h], [-0.78 * h, 0.78 * h]]),
               bgr(dial), mask=False)
    ink = (20, 20, 20) if sum(dial) > 360 else (235, 235, 235)
    ticks = [pose([[0.68 * R * math.sin(a), -0.68 * R * math.cos(a)], [0.8 * R * math.sin(a), -0.8 * R * math.cos(a)]])
             for a in np.linspace(0, 2 * np.pi, 12, endpoint=False)]
    p.lines(ticks, ink, max(1.0, 0.06 * R), mask=False)
    ha, ma = rng.uniform(0, 2 * np.pi, 2)
    p.lines([pose([[0, 0], [0.45 * R * math.sin(ha), -0.45 * R * math.cos(ha)]]),
             pose([[0, 0], [0.7 * R * math.sin(ma), -0.7 * R * math.cos(ma)]])], ink, max(1.0, 0.08 * R), mask=False)
    sa = rng.uniform(0, 2 * np.pi)
    p.lines([pose([[0, 0], [0.75 * R * math.sin(sa), -0.75 * R * math.cos(sa)]])], (30, 30, 200), 1, mask=False)
    # The crystal's reflection: a pale arc along the upper-left of the dial.
    p.ellipse(c, (0.7 * R, 0.7 * R), ang, 195, 255, bgr((255, 255, 255), 0.85), max(1.0, 0.07 * R), mask=False)


DRAWERS = {
    "ring": draw_ring, "necklace": draw_necklace, "earring": draw_earring, "bracelet": draw_bracelet,
    "pendant": draw_pendant, "brooch": draw_brooch, "watch": draw_watch,
}
