"""Film a planned store day: composite each frame from the case's pre-drawn slots, hands, light and glass.

The case floor and every slot's picture are drawn once and pasted into one scene, padded so the
camera can be nudged and jitter. A frame is a window of that scene, multiplied by the light (a slow
spatial field redrawn once a second, times the day's gain), with the glass, any glare and sensor noise
added: a handful of saturating OpenCV operations. Hands are drawn only in the box they cover. What the
film sees (which slots each hand and each glare covered) goes back into the truth.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from edge.errors import DataError
from trainer.synth.day_ambient import MAX_OFFSET, Ambient, camera_offset, light_gain
from trainer.synth.day_plan import DayPlan, Visit
from trainer.synth.hands import HAND_COVER, SKIN_RGB, draw_hand
from trainer.synth.pieces import Lining, PieceArt, slot_picture
from trainer.synth.video import _case_floor, _glass, _sensor_noise

logger = logging.getLogger(__name__)

PAD = MAX_OFFSET + 2    # the scene is this much larger than the frame on every side (nudges and jitter)
DRIFT = 0.02            # the light's own slow breathing, on top of the planned ramp
GLARE_CORE = 40         # a glare covers a slot where it adds more than this many levels ...
GLARE_SHARE = 0.1       # ... over this share of the slot


@dataclass
class FilmStats:
    """What the film saw, for the truth, and how long it took."""

    hand_slots: dict[int, set[int]] = field(default_factory=dict)    # event index -> slots a hand covered
    glare_slots: dict[int, set[int]] = field(default_factory=dict)   # ambient index -> slots under it
    seconds: float = 0.0       # wall time of rendering and encoding
    cpu_seconds: float = 0.0   # this process's CPU time for the same


def _smooth(u: float) -> float:
    u = min(1.0, max(0.0, u))
    return u * u * (3.0 - 2.0 * u)


class _Film:
    def __init__(self, plan: DayPlan, layout, width: int, height: int, fps: float, seed: int,
                 linings: list[Lining], art: Callable[[str], PieceArt]):
        self.plan, self.layout, self.width, self.height, self.fps = plan, layout, width, height, fps
        self.linings, self.art = linings, art
        self.side = layout[0][1][2] - layout[0][1][0]
        self.rng = np.random.default_rng([seed, 10])
        grow = PAD - 2  # the floor is cut 2 px larger than asked on every side
        shifted = [(n, (x0 + grow, y0 + grow, x1 + grow, y1 + grow)) for n, (x0, y0, x1, y1) in layout]
        self.scene = _case_floor(seed, shifted, width + 2 * grow, height + 2 * grow)
        xx, yy = np.meshgrid(np.linspace(-1, 1, 32, dtype=np.float32), np.linspace(-1, 1, 18, dtype=np.float32))
        self.grid = (xx, yy)
        self.glass = _glass(self.rng, xx, yy, width, height)
        self.noise = _sensor_noise(seed, width, height)
        self.phase = self.rng.uniform(0, 2 * np.pi, 3)
        self.light3 = None
        self.glare_sprites: dict[int, np.ndarray] = {}
        self.stats = FilmStats()

    # ---------------------------------------------------------------- the case

    def place(self, slot: int, piece: str | None, offset) -> None:
        x0, y0, x1, y1 = self.layout[slot][1]
        art = None if piece is None else self.art(piece)
        self.scene[y0 + PAD:y1 + PAD, x0 + PAD:x1 + PAD] = slot_picture(self.linings[slot], art, offset)

    def light(self, t: float) -> None:
        """The slow spatial light field, as ``uint8`` with 128 for unchanged."""
        xx, yy = self.grid
        light = 1.0 + 0.05 * math.sin(2 * math.pi * t / 170.0 + self.phase[1]) * xx \
            + 0.04 * math.sin(2 * math.pi * t / 130.0 + self.phase[2]) * yy
        self.light3 = cv2.cvtColor(cv2.resize((light * 128.0).astype(np.float32), (self.width, self.height)),
                                   cv2.COLOR_GRAY2BGR).astype(np.uint8)

    # ---------------------------------------------------------------- hands and glare

    def hand(self, frame: np.ndarray, v: Visit, t: float, offset) -> None:
        x0, y0, x1, y1 = self.layout[v.slot][1]
        scale = 0.9 * self.side
        target = np.array([(x0 + x1) / 2 + offset[0], (y0 + y1) / 2 + offset[1]])
        entry = np.array([v.entry * self.width, self.height + 1.8 * self.side])  # all of the hand out of sight
        d = (target - entry) / (np.linalg.norm(target - entry) + 1e-9)
        goal = target  # the palm over the piece, the fingers beyond it
        if t < v.t_reach:
            reach = _smooth((t - v.t_in) / (v.t_reach - v.t_in))
        elif t < v.t_leave:
            reach = 1.0
        else:
            reach = 1.0 - _smooth((t - v.t_leave) / (v.t_out - v.t_leave))
        wobble = 0.04 * scale * np.array([math.sin(7.0 * t + v.entry * 9), math.cos(5.0 * t + v.skin)])
        centre = entry + (goal - entry) * reach + wobble * reach
        # The box the hand, its forearm and its shadow can reach (see hands.draw_hand's proportions).
        n = np.array([-d[1], d[0]])
        pts = np.array([centre + scale * (d * a + n * b) for a in (1.4, -4.1) for b in (-1.0, 1.0)])
        bx0, by0 = np.clip(np.floor(pts.min(axis=0) - 0.3 * scale), 0, [self.width, self.height]).astype(int)
        bx1, by1 = np.clip(np.ceil(pts.max(axis=0) + 0.3 * scale), 0, [self.width, self.height]).astype(int)
        if bx1 - bx0 < 2 or by1 - by0 < 2:
            return
        roi = frame[by0:by1, bx0:bx1]
        mask = np.zeros(roi.shape[:2], np.uint8)
        draw_hand(roi, mask, centre - (bx0, by0), d, scale, SKIN_RGB[v.skin])
        covered = self.stats.hand_slots.setdefault(v.event, set())
        for k, (_, (sx0, sy0, sx1, sy1)) in enumerate(self.layout):
            ix0, iy0, ix1, iy1 = max(sx0, bx0), max(sy0, by0), min(sx1, bx1), min(sy1, by1)
            if ix1 > ix0 and iy1 > iy0 and k not in covered:
                hidden = np.count_nonzero(mask[iy0 - by0:iy1 - by0, ix0 - bx0:ix1 - bx0])
                if hidden > HAND_COVER * (sx1 - sx0) * (sy1 - sy0):
                    covered.add(k)

    def _sprite(self, k: int, e: Ambient) -> np.ndarray:
        if k not in self.glare_sprites:
            ax, ay = e.params["axes"]
            r = int(math.ceil(1.6 * max(ax, ay)))
            yy, xx = np.mgrid[-r:r + 1, -r:r + 1].astype(np.float32)
            a = math.radians(e.params["angle"])
            u, w = xx * math.cos(a) + yy * math.sin(a), -xx * math.sin(a) + yy * math.cos(a)
            g = np.exp(-0.5 * ((u / (0.6 * ax)) ** 2 + (w / (0.6 * ay)) ** 2)) * e.params["peak"]
            self.glare_sprites[k] = cv2.merge([g * 0.97, g, g * 0.92])  # a warm white, BGR
        return self.glare_sprites[k]

    def glare(self, frame: np.ndarray, t: float) -> None:
        for k, e in enumerate(self.plan.ambient):
            if e.kind != "glare" or not e.t <= t < e.t_end:
                continue
            sprite = self._sprite(k, e)
            fade = min(1.0, (t - e.t) / 1.0, (e.t_end - t) / 1.0)
            r = sprite.shape[0] // 2
            cx, cy = (e.params["start"] + e.params["travel"] * (t - e.t) / (e.t_end - e.t)).astype(int)
            fx0, fy0 = max(0, cx - r), max(0, cy - r)
            fx1, fy1 = min(self.width, cx + r + 1), min(self.height, cy + r + 1)
            if fx1 <= fx0 or fy1 <= fy0:
                continue
            part = sprite[fy0 - (cy - r):fy1 - (cy - r), fx0 - (cx - r):fx1 - (cx - r)]
            roi = frame[fy0:fy1, fx0:fx1]
            cv2.add(roi, (part * fade).astype(np.uint8), dst=roi)
            covered = self.stats.glare_slots.setdefault(k, set())
            core = part[..., 1] * fade > GLARE_CORE
            for s, (_, (sx0, sy0, sx1, sy1)) in enumerate(self.layout):
                ix0, iy0, ix1, iy1 = max(sx0, fx0), max(sy0, fy0), min(sx1, fx1), min(sy1, fy1)
                if ix1 > ix0 and iy1 > iy0 and s not in covered:
                    n = np.count_nonzero(core[iy0 - fy0:iy1 - fy0, ix0 - fx0:ix1 - fx0])
                    if n > GLARE_SHARE * (sx1 - sx0) * (sy1 - sy0):
                        covered.add(s)

    # ---------------------------------------------------------------- the film

    def frames(self, n_frames: int):
        """Yield the frames in order (``uint8`` BGR, ``height x width x 3``)."""
        changes, visits = self.plan.changes, self.plan.visits
        ci = vi = 0
        jitter = (0, 0)
        noise_pos, noise_neg = self.noise
        every = max(1, int(round(self.fps)))
        for i in range(n_frames):
            t = i / self.fps
            while ci < len(changes) and changes[ci].t <= t + 1e-6:
                c = changes[ci]
                self.place(c.slot, c.piece, c.offset)
                ci += 1
            if i % every == 0:  # the camera settles somewhere new, and the light is redrawn, once a second
                jitter = tuple(int(v) for v in self.rng.integers(-1, 2, 2))
                self.light(t)
            dx, dy = camera_offset(self.plan.ambient, t)
            ox, oy = PAD - dx - jitter[0], PAD - dy - jitter[1]
            view = self.scene[oy:oy + self.height, ox:ox + self.width]
            while vi < len(visits) and visits[vi].t_out <= t:
                vi += 1
            drift = 1.0 + DRIFT * math.sin(2 * math.pi * t / 11.0 + self.phase[0])
            gain = light_gain(self.plan.ambient, t, i) * drift
            if vi < len(visits) and visits[vi].t_in <= t:
                frame = view.copy()
                self.hand(frame, visits[vi], t, (dx, dy))
                cv2.multiply(frame, self.light3, dst=frame, scale=gain / 128.0)
            else:
                frame = cv2.multiply(view, self.light3, scale=gain / 128.0)
            cv2.add(frame, self.glass, dst=frame)
            self.glare(frame, t)
            nx, ny = (int(v) for v in self.rng.integers(0, 32, 2))
            cv2.add(frame, noise_pos[ny:ny + self.height, nx:nx + self.width], dst=frame)
            cv2.subtract(frame, noise_neg[ny:ny + self.height, nx:nx + self.width], dst=frame)
            yield frame


def film_day(out: Path, plan: DayPlan, layout, width: int, height: int, fps: float, n_frames: int, seed: int,
             linings: list[Lining], art: Callable[[str], PieceArt]) -> FilmStats:
    """Write the day to ``out`` (MPEG-4); returns what the film saw.

    Raises:
        DataError: OpenCV cannot write MPEG-4 here.
    """
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (width, height))
    if not writer.isOpened():
        raise DataError(f"{out}: OpenCV cannot write MPEG-4 video here")
    film = _Film(plan, layout, width, height, fps, seed, linings, art)
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        for frame in film.frames(n_frames):
            writer.write(frame)
    finally:
        writer.release()
    film.stats.seconds, film.stats.cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    return film.stats
