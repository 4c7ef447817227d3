"""Hands over the display case: when they pass, which slot each reaches for, and how one looks from above."""
from __future__ import annotations

import math

import cv2
import numpy as np

HAND_SHARE = 0.045  # at most this share of frames shows a hand
HAND_COVER = 0.1    # a slot counts as covered when the hand hides this share of it
SKIN_RGB = [(226, 180, 150), (200, 150, 115), (160, 110, 80), (110, 76, 54)]

#: One planned pass: (first frame, length in frames, entry point, centre of the slot reached for).
HandPass = tuple[int, int, np.ndarray, np.ndarray]


def hand_passes(rng: np.random.Generator, n_frames: int, fps: float) -> list[tuple[int, int]]:
    """``(first_frame, length)`` of each hand pass: together at most :data:`HAND_SHARE` of the frames."""
    length = int(np.clip(round(0.8 * fps), 4, 12))
    n = int(HAND_SHARE * n_frames) // length
    if n == 0:
        return []
    bounds = np.linspace(0, n_frames, n + 1).astype(int)
    return [(int(rng.integers(a, max(a + 1, b - length))), length) for a, b in zip(bounds[:-1], bounds[1:])]


def draw_hand(frame: np.ndarray, mask: np.ndarray, centre, direction, scale: float, skin) -> None:
    """A hand seen from above (palm, four fingers, thumb) with a soft shadow; ``mask`` gets its coverage."""
    d = np.asarray(direction, np.float64)
    d /= np.linalg.norm(d) + 1e-9
    n = np.array([-d[1], d[0]])
    c = np.asarray(centre, np.float64)
    # The forearm runs back out of the frame, so the hand never floats.
    parts = [("arm", c - d * 0.3 * scale, c - d * 4.0 * scale), ("ellipse", c, (0.55 * scale, 0.5 * scale))]
    for k, off in enumerate((-0.36, -0.12, 0.12, 0.36)):
        base = c + d * 0.35 * scale + n * off * scale
        length = scale * (0.75, 0.9, 0.85, 0.65)[k]
        parts.append(("finger", base, base + d * length))
    thumb = c - d * 0.05 * scale + n * 0.5 * scale
    parts.append(("finger", thumb, thumb + (d * 0.5 + n * 0.6) * scale * 0.7))
    width = int(max(3, 0.2 * scale))
    ang = math.degrees(math.atan2(d[1], d[0]))

    def paint(img, colour, shift=(0.0, 0.0), widen=1.0):
        s = np.asarray(shift)
        for kind, a, b in parts:
            if kind == "arm":
                cv2.line(img, tuple(int(v) for v in a + s), tuple(int(v) for v in b + s), colour,
                         int(0.85 * scale * widen), cv2.LINE_AA)
            elif kind == "ellipse":
                cv2.ellipse(img, tuple(int(v) for v in a + s), tuple(int(v * widen) for v in b), ang, 0, 360, colour,
                            -1, cv2.LINE_AA)
            else:
                cv2.line(img, tuple(int(v) for v in a + s), tuple(int(v) for v in b + s), colour,
                         int(width * widen), cv2.LINE_AA)

    paint(mask, 255)
    shadow = np.zeros_like(mask)
    paint(shadow, 110, shift=(0.12 * scale, 0.18 * scale))
    shadow = cv2.blur(shadow, (15, 15))
    cv2.subtract(frame, cv2.cvtColor(shadow, cv2.COLOR_GRAY2BGR), dst=frame)
    hand = np.zeros_like(frame)
    paint(hand, tuple(int(v * 0.72) for v in skin[::-1]))
    paint(hand, tuple(int(v * 0.9) for v in skin[::-1]), shift=(-0.03 * scale, -0.03 * scale), widen=0.85)
    paint(hand, tuple(int(min(255, v * 1.05 + 10)) for v in skin[::-1]), shift=(-0.07 * scale, -0.07 * scale),
          widen=0.45)
    hand = cv2.GaussianBlur(hand, (3, 3), 0)
    sel = mask > 0
    frame[sel] = hand[sel]


def plan_hands(rng: np.random.Generator, passes, layout, width: int, height: int,
               slot_side: int) -> list[HandPass]:
    """Where each hand pass enters the frame (from below) and which slot's centre it reaches for."""
    plan = []
    for start, length in passes:
        target = np.array(layout[int(rng.integers(len(layout)))][1], np.float64)
        tc = np.array([(target[0] + target[2]) / 2, (target[1] + target[3]) / 2])
        entry = np.array([rng.uniform(0.2, 0.8) * width, height + 0.6 * slot_side])
        plan.append((start, length, entry, tc))
    return plan


def hands_at(frame: np.ndarray, i: int, plan: list[HandPass], layout, skin, slot_side: int) -> list[str]:
    """Draw the hands passing at frame ``i``; returns the names of the slots they cover."""
    height, width = frame.shape[:2]
    covered = []
    for start, length, entry, tc in plan:
        if start <= i < start + length:
            u = (i - start + 0.5) / length
            reach = 1.0 - abs(2.0 * u - 1.0)  # in, then back out
            centre = entry + (tc - entry) * reach
            hmask = np.zeros((height, width), np.uint8)
            draw_hand(frame, hmask, centre, tc - entry, 0.9 * slot_side, skin)
            for name, (x0, y0, x1, y1) in layout:
                if np.count_nonzero(hmask[y0:y1, x0:x1]) > HAND_COVER * (x1 - x0) * (y1 - y0):
                    covered.append(name)
    return covered
