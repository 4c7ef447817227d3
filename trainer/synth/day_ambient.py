"""What happens to the whole case in a store day: the light ramps and flickers, the camera is nudged, glare.

None of these changes a slot's piece, so none may raise an incident. Each is planned once (``plan_ambient``)
and read back per frame by the film (``light_gain``, ``camera_offset``, ``Ambient`` glare fields).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

#: Per hour of video, at least one each.
PER_HOUR = {"lighting": 1, "flicker": 1, "nudge": 1, "glare": 6}
RAMP = 0.30            # the light swells by this share and sinks by it (one slow period)
RAMP_S = (60.0, 600.0)
FLICKER_S = 2.0
FLICKER_GAIN = (0.45, 1.1)
NUDGE_PX = (3.0, 5.0)
MAX_OFFSET = 6         # the camera never ends up further than this from where the slot map was drawn
GLARE_S = (4.0, 15.0)


@dataclass
class Ambient:
    """One case-wide event: ``kind`` in lighting, flicker, nudge, glare, from ``t`` to ``t_end``."""

    kind: str
    t: float
    t_end: float
    params: dict = field(default_factory=dict)

    def truth(self) -> dict:
        """Its line in the truth file (glare's ``slots`` are added by the film, which sees them)."""
        line = {"t": round(self.t, 3), "kind": self.kind}
        if self.kind != "nudge":
            line["t_end"] = round(self.t_end, 3)
        if self.kind == "lighting":
            line.update(gain_max=round(1 + RAMP, 3), gain_min=round(1 - RAMP, 3),
                        first="up" if self.params["sign"] > 0 else "down")
        elif self.kind == "nudge":
            line.update(dx=self.params["dx"], dy=self.params["dy"], offset=list(self.params["offset"]))
        return line


def _count(kind: str, seconds: float) -> int:
    return max(1, math.ceil(PER_HOUR[kind] * seconds / 3600.0 - 1e-9))


def _strata(rng: np.random.Generator, n: int, lo: float, hi: float, length: float) -> list[float]:
    """``n`` start times, one in each of ``n`` equal windows of ``[lo, hi]``, each leaving ``length`` s."""
    width = (hi - lo) / n
    return [lo + i * width + float(rng.uniform(0.0, max(0.0, width - length))) for i in range(n)]


def plan_ambient(rng: np.random.Generator, seconds: float, quiet: float, frame: tuple[int, int],
                 slot_rects: list[tuple[int, int, int, int]]) -> list[Ambient]:
    """The day's lighting ramps, flickers, nudges and glare, at stratified times after the opening ``quiet`` s."""
    out: list[Ambient] = []
    n = _count("lighting", seconds)
    length = float(np.clip(0.5 * (seconds - quiet) / n, *RAMP_S))
    sign = 1.0 if rng.random() < 0.5 else -1.0
    for t in _strata(rng, n, quiet, seconds, length):
        out.append(Ambient("lighting", t, min(seconds, t + length), {"sign": sign}))
        sign = -sign
    for t in _strata(rng, _count("flicker", seconds), quiet, seconds - 1.0, FLICKER_S):
        out.append(Ambient("flicker", t, t + FLICKER_S, {"seed": int(rng.integers(1 << 30))}))
    offset = np.zeros(2, int)
    for t in _strata(rng, _count("nudge", seconds), quiet, seconds - 1.0, 0.0):
        a, r = rng.uniform(0, 2 * np.pi), rng.uniform(*NUDGE_PX)
        step = np.array([round(r * math.cos(a)), round(r * math.sin(a))], int)
        if not step.any():
            step[0] = 3
        step[np.abs(offset + step) > MAX_OFFSET] *= -1
        offset = offset + step
        out.append(Ambient("nudge", t, t, {"dx": int(step[0]), "dy": int(step[1]), "offset": (int(offset[0]),
                                                                                             int(offset[1]))}))
    side = slot_rects[0][2] - slot_rects[0][0]
    for t in _strata(rng, _count("glare", seconds), quiet, seconds - 1.0, GLARE_S[1]):
        dur = float(rng.uniform(*GLARE_S))
        x0, y0, x1, y1 = slot_rects[int(rng.integers(len(slot_rects)))]
        a = rng.uniform(0, 2 * np.pi)
        travel = rng.uniform(0.2, 0.5) * side * np.array([math.cos(a), math.sin(a)])
        out.append(Ambient("glare", t, t + dur, {
            "start": np.array([(x0 + x1) / 2, (y0 + y1) / 2]) - travel / 2, "travel": travel,
            "axes": (float(rng.uniform(0.6, 1.0) * side), float(rng.uniform(0.25, 0.45) * side)),
            "angle": float(rng.uniform(0, 180)), "peak": float(rng.uniform(70, 120))}))
    out.sort(key=lambda e: e.t)
    return out


def light_gain(ambient: list[Ambient], t: float, frame_index: int) -> float:
    """The case-wide light at ``t`` relative to the day's base (the ramp times any flicker)."""
    gain = 1.0
    for e in ambient:
        if e.t <= t < e.t_end:
            if e.kind == "lighting":
                gain *= 1.0 + e.params["sign"] * RAMP * math.sin(2 * math.pi * (t - e.t) / (e.t_end - e.t))
            elif e.kind == "flicker":
                gain *= float(np.random.default_rng([e.params["seed"], frame_index]).uniform(*FLICKER_GAIN))
    return gain


def camera_offset(ambient: list[Ambient], t: float) -> tuple[int, int]:
    """How far the picture has moved (px, x and y) by the nudges up to ``t``."""
    offset = (0, 0)
    for e in ambient:
        if e.kind == "nudge" and e.t <= t:
            offset = e.params["offset"]
    return offset
