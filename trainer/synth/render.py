"""Render one display-case slot as the camera sees it: tray, item, shadow, tags, fingers, glass, sensor.

:func:`render_item` is the one renderer behind both the image dataset and the video, so a crop of a
video slot looks like a training image at the same scale.
"""
from __future__ import annotations

import logging
import math

import cv2
import numpy as np

from edge.contracts import DEFAULT_CLASSES
from edge.errors import ConfigError
from trainer.synth.items import DRAWERS
from trainer.synth.paint import Painter, bgr
from trainer.synth.tray import camera_effects, glass_reflection, gray3, lighting_field, render_tray, tray_details

logger = logging.getLogger(__name__)

KNOWN_CLASSES = frozenset(DEFAULT_CLASSES)
MIN_SIZE = 32
# An occluder may hide at most this share of the item (the limit is ~25%).
MAX_OCCLUSION = 0.2
_SKIN_RGB = [(234, 192, 160), (214, 160, 120), (170, 116, 80), (120, 80, 56), (244, 210, 186)]
_TAG_RGB = [(248, 248, 242), (244, 236, 210), (250, 250, 250), (230, 214, 170)]


def check_class(cls: str) -> None:
    """Raise :class:`ConfigError` naming ``cls`` unless the renderer knows it."""
    if cls not in KNOWN_CLASSES:
        raise ConfigError(f"--classes: unknown class {cls!r} (known: {', '.join(DEFAULT_CLASSES)})")


def _price_tag(p: Painter, rng: np.random.Generator, s: int, anchor) -> None:
    """A small paper tag on a thread, tied at ``anchor`` (a point on the item, or anywhere when empty)."""
    w, h = s * rng.uniform(0.11, 0.16), s * rng.uniform(0.065, 0.09)
    a = rng.uniform(0, 2 * np.pi)
    dist = s * rng.uniform(0.12, 0.22)
    c = np.asarray(anchor) + dist * np.array([math.cos(a), math.sin(a)])
    rot = math.radians(rng.uniform(-40, 40))
    m = np.array([[math.cos(rot), -math.sin(rot)], [math.sin(rot), math.cos(rot)]])
    box = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) * 0.5 @ m.T + c
    hole = np.array([-0.36 * w, 0.0]) @ m.T + c
    p.lines([np.stack([anchor, hole])], bgr((200, 40, 40)) if rng.random() < 0.5 else (230, 230, 230), 1)
    p.poly(box, bgr(_TAG_RGB[int(rng.integers(len(_TAG_RGB)))]))
    p.circle(hole, max(0.8, 0.06 * w), (60, 60, 60), mask=False)
    text = [np.array([[-0.2 * w, y * h], [(-0.2 + rng.uniform(0.3, 0.6)) * w, y * h]]) @ m.T + c for y in (-0.18, 0.15)]
    p.lines(text, (40, 40, 40), max(1.0, 0.1 * h), mask=False)


def _finger(p: Painter, rng: np.random.Generator, s: int, target) -> None:
    """A fingertip reaching in from a slot edge towards ``target``, with its nail."""
    side = int(rng.integers(4))
    u = rng.uniform(0.15, 0.85) * s
    start = [np.array([u, -0.1 * s]), np.array([1.1 * s, u]), np.array([u, 1.1 * s]), np.array([-0.1 * s, u])][side]
    d = np.asarray(target, np.float64) - start
    d /= np.linalg.norm(d) + 1e-6
    reach = s * rng.uniform(0.22, 0.4)
    edge_pt = np.clip(start, 0, s)
    tip = edge_pt + d * reach
    w = s * rng.uniform(0.1, 0.14)
    skin = _SKIN_RGB[int(rng.integers(len(_SKIN_RGB)))]
    n = np.array([-d[1], d[0]])
    # A tapered outline: wider at the knuckle than at the rounded tip.
    t = np.linspace(0.0, 1.0, 8)[:, None]
    half = (0.5 * w * (1.1 - 0.2 * t))
    axis = start + (tip - start) * t
    outline = np.concatenate([axis + n * half, (axis - n * half)[::-1]])
    p.poly(outline, bgr(skin, 0.75))
    p.circle(tip, 0.45 * w, bgr(skin, 0.75))
    p.poly(np.concatenate([axis + n * half * 0.6, (axis - n * half * 0.75)[::-1]]) - d * 0.02 * w, bgr(skin, 1.0),
           mask=False)
    p.circle(tip - n * 0.05 * w, 0.33 * w, bgr(skin, 1.0), mask=False)
    # Knuckle creases, and the nail just behind the tip.
    for k in (0.45, 0.5):
        q = tip - d * reach * k
        p.lines([np.stack([q - n * 0.3 * w, q + n * 0.3 * w])], bgr(skin, 0.65), max(1.0, 0.03 * w), mask=False)
    ang = math.degrees(math.atan2(d[1], d[0]))
    p.ellipse(tip - d * 0.12 * w, (0.3 * w, 0.25 * w), ang, 0, 360, bgr(skin, 1.08, 30), -1, mask=False)
    p.ellipse(tip - d * 0.05 * w, (0.12 * w, 0.2 * w), ang, 0, 360, bgr(skin, 1.12, 50), -1, mask=False)


def _add_occluder(item: Painter, rng: np.random.Generator, s: int, draw, item_area: int):
    """Draw an occluder on its own layer, retrying placements that would hide too much of the item."""
    ys, xs = np.nonzero(item.mask > 127) if item_area else (None, None)
    for _ in range(3):
        occ = Painter(s)
        if item_area:
            k = int(rng.integers(len(xs)))
            anchor = np.array([xs[k], ys[k]], np.float64)
        else:
            anchor = s * rng.uniform(0.2, 0.8, 2)
        draw(occ, rng, s, anchor)
        if not item_area:
            return occ
        hidden = np.count_nonzero((occ.mask > 127) & (item.mask > 127))
        if hidden <= MAX_OCCLUSION * item_area:
            return occ
    return None


def _shifted(a: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """``a`` moved right by ``dx`` and down by ``dy`` pixels (non-negative), zero-filled."""
    out = np.zeros_like(a)
    h, w = a.shape[:2]
    out[dy:, dx:] = a[:h - dy, :w - dx]
    return out


def _composite(img: np.ndarray, p: Painter, rng: np.random.Generator, s: int, mirror: bool) -> None:
    """Lay a painted layer onto ``img`` in place, with its soft shadow (and reflection on a mirror tray)."""
    sh = max(1.0, s * rng.uniform(0.015, 0.03))
    # Soft shadows are blurred at quarter resolution, scaled back up and offset by whole pixels.
    q = 4 if s >= 64 else 2
    small = cv2.resize(p.mask, (s // q, s // q), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), max(0.5, sh / q))
    shadow = _shifted(cv2.resize(small, (s, s), interpolation=cv2.INTER_LINEAR),
                      int(round(sh * rng.uniform(0.3, 1.0))), int(round(sh * rng.uniform(0.6, 1.3))))
    shade = shadow.astype(np.float32)
    shade *= -rng.uniform(0.3, 0.55) / 255.0
    shade += 1.0
    img *= gray3(shade)
    if mirror:
        dy = int(round(s * rng.uniform(0.04, 0.09)))
        keep = _shifted(p.mask, 0, dy).astype(np.float32)
        keep *= -0.4 / 255.0
        keep += 1.0
        img *= gray3(keep)
        refl = _shifted(p.layer, 0, dy).astype(np.float32)
        refl *= 0.4
        img += refl
    keep = p.mask.astype(np.float32)
    keep *= -1.0 / 255.0
    keep += 1.0
    img *= gray3(keep)
    img += p.layer


def render_scene(cls: str, rng: np.random.Generator, size: int, tray_rng: np.random.Generator | None = None,
                 glass: bool = True, noise: bool = True) -> np.ndarray:
    """Render a slot; ``tray_rng`` (a generator of its own) fixes the tray, as a video slot keeps its lining.

    Args:
        cls: a class name from :data:`DEFAULT_CLASSES`.
        rng: the generator for the item, nuisances and camera.
        size: side in pixels (at least 32).
        tray_rng: when given, the tray and its lighting are drawn from it instead of ``rng``.
        glass: add reflections of the case glass.
        noise: add sensor noise.

    Returns:
        ``size x size x 3`` BGR ``uint8``.
    """
    check_class(cls)
    if size < MIN_SIZE:
        raise ConfigError(f"--size: {size} px is below the minimum of {MIN_SIZE} px")
    trng = tray_rng if tray_rng is not None else rng
    img, kind = render_tray(trng, size)
    tray_details(img, trng, kind)
    light = lighting_field(trng, size)
    item = Painter(size)
    if cls != "empty":
        DRAWERS[cls](item, rng, size)
    area = int(np.count_nonzero(item.mask > 127))
    occluders = []
    if rng.random() < 0.3:
        occluders.append(_add_occluder(item, rng, size, _price_tag, area))
    if rng.random() < 0.1:
        occluders.append(_add_occluder(item, rng, size, _finger, area))
    _composite(img, item, rng, size, kind == "mirror")
    for occ in occluders:
        if occ is not None:
            _composite(img, occ, rng, size, False)
    img *= light
    if glass and rng.random() < 0.5:
        glass_reflection(img, rng)
    return camera_effects(img, rng, noise=noise)


def render_item(cls: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """A slot as the camera sees it: tray lining, the item (none for ``empty``) and the nuisances.

    Args:
        cls: a class name from :data:`DEFAULT_CLASSES`.
        rng: every random choice comes from it, so one seed gives one image.
        size: side of the square image in pixels (at least 32).

    Returns:
        ``size x size x 3`` BGR ``uint8``.

    Raises:
        ConfigError: unknown class or size below 32 px.
    """
    return render_scene(cls, rng, size)
