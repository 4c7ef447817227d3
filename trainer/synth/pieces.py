"""The pieces of a store day, each drawn once, and a slot's picture with or without its piece.

A piece is a premultiplied BGR layer and its alpha at the slot's size: drawn by the dataset's own
drawers (:data:`trainer.synth.items.DRAWERS`), or cut from a keyed product photo
(:mod:`trainer.synth.photos`) scaled to the size such a piece has in the case. A slot keeps its lining
and its light all day (the same generators as :mod:`trainer.synth.video`); putting a piece into it
is a soft shadow and an alpha blend, a millisecond's work, so the video composites instead of redrawing.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from trainer.synth.items import DRAWERS
from trainer.synth.paint import Painter
from trainer.synth.photos import PHOTO_SCALE, KeyedPhoto
from trainer.synth.tray import lighting_field, render_tray, tray_details

logger = logging.getLogger(__name__)

PHOTO_GAIN = 0.85   # studio shots are brighter than a lit case
SHADOW = 0.45       # how much of the light a piece's shadow takes


@dataclass(frozen=True)
class PieceArt:
    """One piece at a slot's size: ``layer`` is BGR premultiplied by ``alpha`` (both float32, 0..255 / 0..1)."""

    layer: np.ndarray
    alpha: np.ndarray


def drawn_piece(cls: str, rng: np.random.Generator, side: int) -> PieceArt:
    """A piece drawn by the generator's own drawer for ``cls``."""
    p = Painter(side)
    DRAWERS[cls](p, rng, side)
    return PieceArt(p.layer.astype(np.float32), p.mask.astype(np.float32) / 255.0)


def photo_piece(photo: KeyedPhoto, rng: np.random.Generator, side: int, mirror: bool = False) -> PieceArt:
    """A keyed photo scaled to the case's scale for its class, turned a little and laid near the slot's centre."""
    bgr, alpha = photo.bgr, photo.alpha
    if mirror:
        bgr, alpha = bgr[:, ::-1], alpha[:, ::-1]
    h, w = alpha.shape
    k = PHOTO_SCALE[photo.cls] * side * rng.uniform(0.9, 1.05) / max(h, w)
    angle = rng.uniform(-20, 20)
    centre = side / 2 + rng.uniform(-0.04, 0.04, 2) * side
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, k)
    m[:, 2] += centre - np.array([w / 2, h / 2])
    colour = cv2.warpAffine(bgr, m, (side, side), flags=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    a = cv2.warpAffine(alpha, m, (side, side), flags=cv2.INTER_LINEAR, borderValue=0).astype(np.float32) / 255.0
    a = cv2.GaussianBlur(a, (0, 0), max(0.6, side / 200))  # feathered: no cut-out staircase at the edge
    colour *= PHOTO_GAIN
    return PieceArt(colour * cv2.cvtColor(a, cv2.COLOR_GRAY2BGR), a)


@dataclass(frozen=True)
class Lining:
    """A slot's empty lining (float32 BGR before light), its light map, and its picture when empty."""

    tray: np.ndarray
    light: np.ndarray
    empty: np.ndarray


def slot_lining(seed: int, slot: int, side: int) -> Lining:
    """The lining of slot ``slot``, drawn from the generators :mod:`trainer.synth.video` uses for it."""
    tray_rng = np.random.default_rng([seed, 1, slot])
    tray, kind = render_tray(tray_rng, side)
    tray_details(tray, tray_rng, kind)
    light = lighting_field(tray_rng, side)
    return Lining(tray, light, np.clip(tray * light, 0, 255).astype(np.uint8))


def _shift(a: np.ndarray, dx: int, dy: int) -> np.ndarray:
    if dx == 0 and dy == 0:
        return a
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(a, m, (a.shape[1], a.shape[0]), flags=cv2.INTER_NEAREST, borderValue=0)


def slot_picture(lining: Lining, art: PieceArt | None, offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """The slot as ``uint8`` BGR: its lining, and the piece (moved by ``offset`` px) with its soft shadow."""
    if art is None:
        return lining.empty
    side = lining.tray.shape[0]
    alpha = _shift(art.alpha, *offset)
    layer = _shift(art.layer, *offset)
    sh = max(1.0, 0.02 * side)
    shadow = _shift(cv2.GaussianBlur(alpha, (0, 0), sh), int(round(sh)), int(round(1.5 * sh)))
    img = lining.tray * cv2.cvtColor(1.0 - SHADOW * shadow, cv2.COLOR_GRAY2BGR)
    img *= cv2.cvtColor(1.0 - alpha, cv2.COLOR_GRAY2BGR)
    img += layer
    img *= lining.light
    return np.clip(img, 0, 255).astype(np.uint8)
