"""A synthetic display-case video: a fixed camera over a grid of slots whose contents change over time.

Each placement in a slot is drawn by the dataset's own renderer (:func:`trainer.synth.render.render_scene`)
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
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import yaml

from edge.contracts import DEFAULT_CLASSES
from edge.errors import ConfigError, DataError
from trainer.synth.hands import SKIN_RGB, HandPass, hand_passes, hands_at, plan_hands
from trainer.synth.render import MIN_SIZE, check_class, render_scene
from trainer.synth.tray import render_tray

logger = logging.getLogger(__name__)

MIN_DWELL_S = 5.0   # a placement stays at least this long (the brief asks >= 3 s; changes stay sparse)
MAX_DWELL_S = 14.0
FIRST_CHANGE_S = 3.0
PAD = 2             # the scene is this much larger than the frame on every side, for the jitter


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


def _slot_image(cls: str, seed: int, stock: int, slot: int, placement: int, side: int) -> np.ndarray:
    # The tray generator is re-created from the case seed and slot alone: a slot keeps its lining and light.
    tray_rng = np.random.default_rng([seed, 1, slot])
    rng = np.random.default_rng([stock, 2, slot, placement])
    return render_scene(cls, rng, side, tray_rng=tray_rng, glass=False, noise=False)


@dataclass
class _Case:
    """What stays fixed while one video is filmed, and the generator that draws the per-frame changes."""

    layout: list[tuple[str, tuple[int, int, int, int]]]
    slot_side: int
    width: int
    height: int
    fps: float
    seed: int
    stock: int
    timeline: list[list[tuple[int, str]]]
    scene: np.ndarray  # the floor with its slots, PAD px larger than the frame on every side
    grid: tuple[np.ndarray, np.ndarray]  # the coarse (x, y) grid that lighting and glass are drawn on
    glass: np.ndarray
    noise: tuple[np.ndarray, np.ndarray]  # sensor noise to add and to subtract, larger than the frame
    phase: np.ndarray
    skin: tuple[int, int, int]
    hand_plan: list[HandPass]
    rng: np.random.Generator


def _stock(rng: np.random.Generator, stock_seed: int | None, n_slots: int, n_frames: int, fps: float,
           classes: tuple[str, ...]) -> tuple[list[list[tuple[int, str]]], list[tuple[int, int]]]:
    """The placements and hand passes: the case's own, or, with ``stock_seed``, another stock's."""
    timeline = _timeline(rng, n_slots, n_frames, fps, classes)
    passes = hand_passes(rng, n_frames, fps)
    if stock_seed is not None:  # drawn after the case's own stock so the case draws below stay the same
        srng = np.random.default_rng([int(stock_seed), 5])
        timeline = _timeline(srng, n_slots, n_frames, fps, classes)
        passes = hand_passes(srng, n_frames, fps)
    return timeline, passes


def _case_floor(seed: int, layout, width: int, height: int) -> np.ndarray:
    """The case floor with a partition rim around each insert, cut larger than the frame so a one-pixel
    camera jitter never shows an edge."""
    side = max(width, height) + 2 * PAD
    floor, _ = render_tray(np.random.default_rng([seed, 3]), side, kind="velvet")
    floor = floor[:height + 2 * PAD, :width + 2 * PAD]
    floor *= 0.7
    scene = cv2.convertScaleAbs(floor)
    for _, (x0, y0, x1, y1) in layout:
        cv2.rectangle(scene, (x0 + PAD - 3, y0 + PAD - 3), (x1 + PAD + 2, y1 + PAD + 2), (70, 70, 74), 3, cv2.LINE_AA)
    return scene


def _glass(rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray, width: int, height: int) -> np.ndarray:
    """A pale diagonal reflection band on the glass, as BGR ``uint8`` to add to each frame."""
    glass_a = rng.uniform(0.3, 1.2)
    glass = np.clip(1.0 - np.abs(np.cos(glass_a) * xx + np.sin(glass_a) * yy - rng.uniform(-0.5, 0.5)) / 0.25, 0, 1)
    glass = cv2.cvtColor(cv2.resize((glass * rng.uniform(10, 22)).astype(np.float32), (width, height)),
                         cv2.COLOR_GRAY2BGR)
    return glass.astype(np.uint8)


def _sensor_noise(seed: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """One noise field, 32 px larger than the frame (each frame takes another window), split into
    the parts to add and to subtract so that ``uint8`` arithmetic saturates instead of wrapping."""
    nrng = np.random.default_rng([seed, 4])
    noise = np.clip(np.round(nrng.standard_normal((height + 32, width + 32, 3)).astype(np.float32) * 3.0), -40, 40)
    return np.maximum(noise, 0).astype(np.uint8), np.maximum(-noise, 0).astype(np.uint8)


def _set_up_case(layout, width: int, height: int, fps: float, n_frames: int, seed: int, stock_seed: int | None,
                 classes: tuple[str, ...]) -> _Case:
    """Draw everything fixed about the video, in the generator's fixed order (the same seed, the same video)."""
    rng = np.random.default_rng([seed, 0])
    timeline, passes = _stock(rng, stock_seed, len(layout), n_frames, fps, classes)
    scene = _case_floor(seed, layout, width, height)
    xx, yy = np.meshgrid(np.linspace(-1, 1, 32, dtype=np.float32), np.linspace(-1, 1, 18, dtype=np.float32))
    glass = _glass(rng, xx, yy, width, height)
    noise = _sensor_noise(seed, width, height)
    phase = rng.uniform(0, 2 * np.pi, 3)
    skin = SKIN_RGB[int(rng.integers(len(SKIN_RGB)))]
    slot_side = layout[0][1][2] - layout[0][1][0]
    hand_plan = plan_hands(rng, passes, layout, width, height, slot_side)
    stock = seed if stock_seed is None else int(stock_seed)
    return _Case(layout=layout, slot_side=slot_side, width=width, height=height, fps=fps, seed=seed, stock=stock,
                 timeline=timeline, scene=scene, grid=(xx, yy), glass=glass, noise=noise, phase=phase, skin=skin,
                 hand_plan=hand_plan, rng=rng)


def _restock(case: _Case, i: int, current: list[str | None], placement_no: list[int]) -> None:
    """Render into the scene each slot whose placement changes at frame ``i``."""
    for k, events in enumerate(case.timeline):
        cls = [c for f, c in events if f <= i][-1]
        if cls != current[k] or any(f == i for f, _ in events[1:]):
            if current[k] is not None:
                placement_no[k] += 1
            current[k] = cls
            x0, y0, x1, y1 = case.layout[k][1]
            case.scene[y0 + PAD:y1 + PAD, x0 + PAD:x1 + PAD] = _slot_image(cls, case.seed, case.stock, k,
                                                                           placement_no[k], x1 - x0)


def _lit_frame(case: _Case, i: int, jitter: tuple[int, int]) -> np.ndarray:
    """Frame ``i`` of the scene as the jittered camera sees it, under drifting light and the glass."""
    width, height, (xx, yy), phase = case.width, case.height, case.grid, case.phase
    frame = case.scene[PAD + jitter[1]:PAD + jitter[1] + height, PAD + jitter[0]:PAD + jitter[0] + width].copy()
    t = i / case.fps
    gain = 1.0 + 0.05 * math.sin(2 * math.pi * t / 11.0 + phase[0])
    light = gain + 0.06 * math.sin(2 * math.pi * t / 17.0 + phase[1]) * xx \
        + 0.04 * math.sin(2 * math.pi * t / 13.0 + phase[2]) * yy
    light3 = cv2.cvtColor(cv2.resize(light.astype(np.float32) * 128.0, (width, height)), cv2.COLOR_GRAY2BGR)
    frame = cv2.multiply(frame, light3.astype(np.uint8), scale=1.0 / 128.0)
    cv2.add(frame, case.glass, dst=frame)
    return frame


def _add_noise(case: _Case, frame: np.ndarray) -> None:
    """Sensor noise, from a window of the noise field that moves every frame."""
    noise_pos, noise_neg = case.noise
    oy, ox = (int(v) for v in case.rng.integers(0, 32, 2))
    cv2.add(frame, noise_pos[oy:oy + case.height, ox:ox + case.width], dst=frame)
    cv2.subtract(frame, noise_neg[oy:oy + case.height, ox:ox + case.width], dst=frame)


def _film(case: _Case, out: Path, n_frames: int) -> list[str]:
    """Write the frames to ``out``; returns the ground truth, one JSON line per frame."""
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), float(case.fps), (case.width, case.height))
    if not writer.isOpened():
        raise DataError(f"{out}: OpenCV cannot write MPEG-4 video here")
    names = [name for name, _ in case.layout]
    current: list[str | None] = [None] * len(case.layout)
    placement_no = [0] * len(case.layout)
    truth_lines = []
    jitter = (0, 0)
    try:
        for i in range(n_frames):
            _restock(case, i, current, placement_no)
            if i % max(1, int(case.fps)) == 0:  # the camera settles somewhere new about once a second
                jitter = tuple(int(v) for v in case.rng.integers(-1, 2, 2))
            frame = _lit_frame(case, i, jitter)
            hand_slots = hands_at(frame, i, case.hand_plan, case.layout, case.skin, case.slot_side)
            _add_noise(case, frame)
            writer.write(frame)
            truth_lines.append(json.dumps({"frame": i, "slots": dict(zip(names, current)), "hand": hand_slots}))
    finally:
        writer.release()
    return truth_lines


def _write_slot_map(out: Path, layout, width: int, height: int, rows: int, cols: int) -> Path:
    """``<stem>.slots.yaml`` beside the video: the slot rectangles normalised to 0..1."""
    slots_path = out.with_suffix(".slots.yaml")
    rects = [{"name": name, "rect": [round(x0 / width, 5), round(y0 / height, 5), round(x1 / width, 5),
                                     round(y1 / height, 5)]} for name, (x0, y0, x1, y1) in layout]
    header = (f"# gemsight slot map for {out.name}: {width}x{height}, {rows}x{cols} slots, rectangles are\n"
              f"# normalised x0, y0, x1, y1 (a device-config fragment: cameras[].slots or slots_file)\n")
    slots_path.write_text(header + yaml.safe_dump({"slots": rects}, default_flow_style=None, sort_keys=False))
    return slots_path


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
    case = _set_up_case(layout, width, height, fps, n_frames, int(seed), stock_seed, classes)
    truth_lines = _film(case, out, n_frames)
    slots_path = _write_slot_map(out, layout, width, height, rows, cols)
    truth_path = out.with_suffix(".truth.jsonl")
    truth_path.write_text("\n".join(truth_lines) + "\n")
    _check_readback(out, n_frames, width, height)
    changes = sum(len(e) - 1 for e in case.timeline)
    logger.info("wrote %s: %d frames %dx%d at %g fps, %dx%d slots of %d px, %d changes, %d hand passes",
                out, n_frames, width, height, fps, rows, cols, case.slot_side, changes, len(case.hand_plan))
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
