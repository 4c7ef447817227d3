"""A synthetic display-case video: a fixed camera over a grid of slots whose contents change over time.

Each placement in a slot is drawn by the dataset's own renderer (:func:`trainer.synth_render.render_scene`)
at the slot's size, on that slot's fixed tray lining, so a crop of a slot rectangle looks like a
training image. Over that come per-frame lighting drift, sensor noise, a pale glass reflection, a
camera jitter of at most one pixel, and now and then a hand passing over a few slots.

Beside ``OUT.mp4`` go ``OUT.slots.yaml`` (a device-config fragment: ``slots: [{name, rect}]`` with
rectangles normalised to 0..1) and ``OUT.truth.jsonl`` (per frame: slot → class, and the slots a hand
covers).

``seed`` fixes the case (floor, slot linings, glass, lighting, camera) and, unless ``stock_seed`` is
given, what is placed in it and when. The same ``seed`` with another ``stock_seed`` films the same case
with other items: what a store records of its own case to teach a model that case.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import yaml

from edge.errors import ConfigError, DataError
from trainer.synth_render import DEFAULT_CLASSES, MIN_SIZE, check_class, render_scene
from trainer.synth_tray import render_tray

logger = logging.getLogger(__name__)

MIN_DWELL_S = 5.0   # a placement stays at least this long (the brief asks >= 3 s; changes stay sparse)
MAX_DWELL_S = 14.0
FIRST_CHANGE_S = 3.0
HAND_SHARE = 0.045  # at most this share of frames shows a hand
HAND_COVER = 0.1    # a slot counts as covered when the hand hides this share of it
_SKIN_RGB = [(226, 180, 150), (200, 150, 115), (160, 110, 80), (110, 76, 54)]


def slot_layout(rows: int, cols: int, width: int, height: int) -> list[tuple[str, tuple[int, int, int, int]]]:
    """Square slot rectangles in pixels, row-major, named ``rRcC``, centred in the frame.

    Raises:
        ConfigError: the grid does not fit (a slot would be under 32 px); names ``--slots``.
    """
    mx, my = 0.04 * width, 0.05 * height
    cell = min((width - 2 * mx) / cols, (height - 2 * my) / rows)
    side = int(cell * 0.9)
    if side < MIN_SIZE:
        raise ConfigError(f"--slots: a {rows}x{cols} grid does not fit a {width}x{height} frame "
                          f"(slots would be {max(side, 0)} px, need at least {MIN_SIZE} px)")
    gx, gy = (width - cols * cell) / 2, (height - rows * cell) / 2
    out = []
    for r in range(rows):
        for c in range(cols):
            x0 = int(round(gx + c * cell + (cell - side) / 2))
            y0 = int(round(gy + r * cell + (cell - side) / 2))
            out.append((f"r{r}c{c}", (x0, y0, x0 + side, y0 + side)))
    return out


def _validate(slots, seconds, fps, size, classes) -> tuple[int, int, int, int, tuple[str, ...]]:
    try:
        rows, cols = (int(v) for v in slots)
    except (TypeError, ValueError):
        raise ConfigError(f"--slots: expected (rows, cols), got {slots!r}") from None
    if rows < 1 or cols < 1:
        raise ConfigError(f"--slots: rows and columns must be at least 1, got {rows}x{cols}")
    try:
        width, height = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ConfigError(f"--size: expected (width, height), got {size!r}") from None
    if width < MIN_SIZE or height < MIN_SIZE:
        raise ConfigError(f"--size: frame {width}x{height} is smaller than {MIN_SIZE}x{MIN_SIZE} px")
    if width % 2 or height % 2:
        raise ConfigError(f"--size: width and height must be even for MPEG-4, got {width}x{height}")
    if not fps > 0 or not math.isfinite(fps):
        raise ConfigError(f"--fps: must be positive, got {fps}")
    if not seconds > 0 or not math.isfinite(seconds):
        raise ConfigError(f"--seconds: must be positive, got {seconds}")
    if int(round(seconds * fps)) < 1:
        raise ConfigError(f"--seconds: {seconds} s at {fps} fps is less than one frame")
    classes = tuple(classes)
    if not classes:
        raise ConfigError("--classes: no classes given")
    for cls in classes:
        check_class(cls)
    return rows, cols, width, height, classes


def _timeline(rng: np.random.Generator, n_slots: int, n_frames: int, fps: float,
              classes: tuple[str, ...]) -> list[list[tuple[int, str]]]:
    """Per slot, the placements as ``(start_frame, class)``: place, remove and swap, sparse in time."""
    items = [c for c in classes if c != "empty"]
    can_empty = "empty" in classes
    out = []
    for _ in range(n_slots):
        if not items or (can_empty and rng.random() < 0.2):
            cls = "empty"
        else:
            cls = items[int(rng.integers(len(items)))]
        events = [(0, cls)]
        # The first change comes anywhere after FIRST_CHANGE_S so slots do not change in step.
        f = int(math.ceil(fps * rng.uniform(FIRST_CHANGE_S, MAX_DWELL_S)))
        while f < n_frames:
            if cls == "empty" or not can_empty or rng.random() < 0.6:
                others = [c for c in items if c != cls] or items
                cls = others[int(rng.integers(len(others)))] if others else "empty"
            else:
                cls = "empty"
            events.append((f, cls))
            f += int(math.ceil(fps * rng.uniform(MIN_DWELL_S, MAX_DWELL_S)))
        out.append(events)
    return out


def _hand_passes(rng: np.random.Generator, n_frames: int, fps: float) -> list[tuple[int, int]]:
    """``(first_frame, length)`` of each hand pass: together at most :data:`HAND_SHARE` of the frames."""
    length = int(np.clip(round(0.8 * fps), 4, 12))
    n = int(HAND_SHARE * n_frames) // length
    if n == 0:
        return []
    bounds = np.linspace(0, n_frames, n + 1).astype(int)
    return [(int(rng.integers(a, max(a + 1, b - length))), length) for a, b in zip(bounds[:-1], bounds[1:])]


def _draw_hand(frame: np.ndarray, mask: np.ndarray, centre, direction, scale: float, skin) -> None:
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


def _slot_image(cls: str, seed: int, stock: int, slot: int, placement: int, side: int) -> np.ndarray:
    # The tray generator is re-created from the case seed and slot alone: a slot keeps its lining and light.
    tray_rng = np.random.default_rng([seed, 1, slot])
    rng = np.random.default_rng([stock, 2, slot, placement])
    return render_scene(cls, rng, side, tray_rng=tray_rng, glass=False, noise=False)


def make_video(out, slots: tuple[int, int] = (3, 4), seconds: float = 20.0, fps: float = 10.0,
               size: tuple[int, int] = (1280, 720), seed: int = 0,
               classes: Sequence[str] = DEFAULT_CLASSES, stock_seed: int | None = None) -> dict[str, Path]:
    """Write a display-case video, its slot map and its per-frame ground truth.

    Args:
        out: the ``.mp4`` path; ``<stem>.slots.yaml`` and ``<stem>.truth.jsonl`` are written beside it.
        slots: grid as (rows, cols); every slot must come out at least 32 px square.
        seconds: duration.
        fps: frame rate.
        size: frame (width, height), even numbers.
        seed: the same seed gives the same frames.
        classes: what may be placed (``empty`` lets slots be emptied).
        stock_seed: other items, placed at other times and passed over by other hands, in the same case.

    Returns:
        ``{"video": Path, "slots": Path, "truth": Path}``.

    Raises:
        ConfigError: a bad argument (the message names it).
        DataError: OpenCV could not write the video, or it did not read back whole.
    """
    rows, cols, width, height, classes = _validate(slots, seconds, fps, size, classes)
    layout = slot_layout(rows, cols, width, height)
    out = Path(out)
    if out.suffix.lower() != ".mp4":
        out = out.with_suffix(".mp4")
    out.parent.mkdir(parents=True, exist_ok=True)
    n_frames = int(round(seconds * fps))
    rng = np.random.default_rng([int(seed), 0])
    timeline = _timeline(rng, len(layout), n_frames, fps, classes)
    passes = _hand_passes(rng, n_frames, fps)
    stock = int(seed) if stock_seed is None else int(stock_seed)
    if stock_seed is not None:  # drawn after the case's own stock so the case draws below stay the same
        srng = np.random.default_rng([stock, 5])
        timeline = _timeline(srng, len(layout), n_frames, fps, classes)
        passes = _hand_passes(srng, n_frames, fps)

    # The case floor, cut larger than the frame so a one-pixel camera jitter never shows an edge.
    pad = 2
    side = max(width, height) + 2 * pad
    floor, _ = render_tray(np.random.default_rng([int(seed), 3]), side, kind="velvet")
    floor = floor[:height + 2 * pad, :width + 2 * pad]
    floor *= 0.7
    scene = cv2.convertScaleAbs(floor)
    for _, (x0, y0, x1, y1) in layout:  # a partition rim around each insert
        cv2.rectangle(scene, (x0 + pad - 3, y0 + pad - 3), (x1 + pad + 2, y1 + pad + 2), (70, 70, 74), 3, cv2.LINE_AA)

    xx, yy = np.meshgrid(np.linspace(-1, 1, 32, dtype=np.float32), np.linspace(-1, 1, 18, dtype=np.float32))
    glass_a = rng.uniform(0.3, 1.2)
    glass = np.clip(1.0 - np.abs(np.cos(glass_a) * xx + np.sin(glass_a) * yy - rng.uniform(-0.5, 0.5)) / 0.25, 0, 1)
    glass = cv2.cvtColor(cv2.resize((glass * rng.uniform(10, 22)).astype(np.float32), (width, height)),
                         cv2.COLOR_GRAY2BGR)
    glass_u8 = glass.astype(np.uint8)
    nrng = np.random.default_rng([int(seed), 4])
    noise = np.clip(np.round(nrng.standard_normal((height + 32, width + 32, 3)).astype(np.float32) * 3.0), -40, 40)
    noise_pos, noise_neg = np.maximum(noise, 0).astype(np.uint8), np.maximum(-noise, 0).astype(np.uint8)
    phase = rng.uniform(0, 2 * np.pi, 3)
    skin = _SKIN_RGB[int(rng.integers(len(_SKIN_RGB)))]
    slot_side = layout[0][1][2] - layout[0][1][0]
    hand_plan = []
    for start, length in passes:
        target = np.array(layout[int(rng.integers(len(layout)))][1], np.float64)
        tc = np.array([(target[0] + target[2]) / 2, (target[1] + target[3]) / 2])
        entry = np.array([rng.uniform(0.2, 0.8) * width, height + 0.6 * slot_side])
        hand_plan.append((start, length, entry, tc))

    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (width, height))
    if not writer.isOpened():
        raise DataError(f"{out}: OpenCV cannot write MPEG-4 video here")
    names = [name for name, _ in layout]
    current = [None] * len(layout)
    placement_no = [0] * len(layout)
    truth_lines = []
    jitter = (0, 0)
    try:
        for i in range(n_frames):
            for k, events in enumerate(timeline):
                cls = [c for f, c in events if f <= i][-1]
                if cls != current[k] or any(f == i for f, _ in events[1:]):
                    if current[k] is not None:
                        placement_no[k] += 1
                    current[k] = cls
                    x0, y0, x1, y1 = layout[k][1]
                    scene[y0 + pad:y1 + pad, x0 + pad:x1 + pad] = _slot_image(cls, int(seed), stock, k,
                                                                              placement_no[k], x1 - x0)
            if i % max(1, int(fps)) == 0:  # the camera settles somewhere new about once a second
                jitter = tuple(int(v) for v in rng.integers(-1, 2, 2))
            frame = scene[pad + jitter[1]:pad + jitter[1] + height, pad + jitter[0]:pad + jitter[0] + width].copy()
            t = i / fps
            gain = 1.0 + 0.05 * math.sin(2 * math.pi * t / 11.0 + phase[0])
            light = gain + 0.06 * math.sin(2 * math.pi * t / 17.0 + phase[1]) * xx \
                + 0.04 * math.sin(2 * math.pi * t / 13.0 + phase[2]) * yy
            light3 = cv2.cvtColor(cv2.resize(light.astype(np.float32) * 128.0, (width, height)), cv2.COLOR_GRAY2BGR)
            frame = cv2.multiply(frame, light3.astype(np.uint8), scale=1.0 / 128.0)
            cv2.add(frame, glass_u8, dst=frame)
            hand_slots = []
            for start, length, entry, tc in hand_plan:
                if start <= i < start + length:
                    u = (i - start + 0.5) / length
                    reach = 1.0 - abs(2.0 * u - 1.0)  # in, then back out
                    centre = entry + (tc - entry) * reach
                    hmask = np.zeros((height, width), np.uint8)
                    _draw_hand(frame, hmask, centre, tc - entry, 0.9 * slot_side, skin)
                    for name, (x0, y0, x1, y1) in layout:
                        if np.count_nonzero(hmask[y0:y1, x0:x1]) > HAND_COVER * (x1 - x0) * (y1 - y0):
                            hand_slots.append(name)
            oy, ox = (int(v) for v in rng.integers(0, 32, 2))
            cv2.add(frame, noise_pos[oy:oy + height, ox:ox + width], dst=frame)
            cv2.subtract(frame, noise_neg[oy:oy + height, ox:ox + width], dst=frame)
            writer.write(frame)
            truth_lines.append(json.dumps({"frame": i, "slots": dict(zip(names, current)), "hand": hand_slots}))
    finally:
        writer.release()

    slots_path = out.with_suffix(".slots.yaml")
    rects = [{"name": name, "rect": [round(x0 / width, 5), round(y0 / height, 5), round(x1 / width, 5),
                                     round(y1 / height, 5)]} for name, (x0, y0, x1, y1) in layout]
    header = (f"# gemsight slot map for {out.name}: {width}x{height}, {rows}x{cols} slots, rectangles are\n"
              f"# normalised x0, y0, x1, y1 (a device-config fragment: cameras[].slots or slots_file)\n")
    slots_path.write_text(header + yaml.safe_dump({"slots": rects}, default_flow_style=None, sort_keys=False))
    truth_path = out.with_suffix(".truth.jsonl")
    truth_path.write_text("\n".join(truth_lines) + "\n")
    _check_readback(out, n_frames, width, height)
    changes = sum(len(e) - 1 for e in timeline)
    logger.info("wrote %s: %d frames %dx%d at %g fps, %dx%d slots of %d px, %d changes, %d hand passes",
                out, n_frames, width, height, fps, rows, cols, slot_side, changes, len(hand_plan))
    return {"video": out, "slots": slots_path, "truth": truth_path}


def _check_readback(path: Path, n_frames: int, width: int, height: int) -> None:
    """Read the video back and count frames: a codec that silently dropped frames fails here."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise DataError(f"{path}: written but OpenCV cannot open it")
        n = 0
        while True:
            ok = cap.grab()
            if not ok:
                break
            n += 1
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        cap.release()
    if n != n_frames or (w, h) != (width, height):
        raise DataError(f"{path}: reads back as {n} frames of {w}x{h}, expected {n_frames} of {width}x{height}")
