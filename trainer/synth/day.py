"""A store day on video, with its truth: ``gemsight-synth day OUT.mp4``.

One display case filmed for a trading day compressed (by default 60 minutes at 5 fps): customers'
hands pass over it, pieces are lifted to be shown and put back, sold, stolen, swapped for another piece
of the same kind, grabbed three at a time, restocked; the light ramps and flickers, the camera is
nudged, glare crosses the glass. Beside ``OUT.mp4`` go ``OUT.slots.yaml`` (the slot map, the format
``gemsight-synth video`` writes) and ``OUT.events.jsonl``: the truth, one JSON object a line, times in
video seconds; the staff's actions the benchmark performs are lines with an ``action``. The format is
described in ``docs/store_day.md``.

The pieces are the generator's own drawings, or with ``photos`` real product photos keyed off their
backgrounds (:mod:`trainer.synth.photos`), a distinct photo for each piece.
"""
from __future__ import annotations

import functools
import json
import logging
import math
from pathlib import Path

import numpy as np

from edge.contracts import DEFAULT_CLASSES
from edge.errors import ConfigError
from trainer.synth.day_film import film_day
from trainer.synth.day_plan import OPENING_QUIET_S, DayPlan, plan_day
from trainer.synth.photos import KeyedPhoto, load_photos
from trainer.synth.pieces import PieceArt, drawn_piece, photo_piece, slot_lining
from trainer.synth.video import _check_readback, _validate, _write_slot_map, slot_layout

logger = logging.getLogger(__name__)

EVENTS_VERSION = 1
DRAWN_CLASSES = tuple(c for c in DEFAULT_CLASSES if c != "empty")


def _check_day_args(minutes: float, fps: float, grace_s: float) -> None:
    for name, value in (("--minutes", minutes), ("--fps", fps), ("--grace-s", grace_s)):
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ConfigError(f"{name}: must be a positive number, got {value}")
    if fps < 1:
        raise ConfigError(f"--fps: {fps:g} is too few to see a hand come and go (at least 1 frame a second)")
    if grace_s < 5:
        raise ConfigError(f"--grace-s: {grace_s:g} s is too short to show a piece and put it back (at least 5 s)")
    need = OPENING_QUIET_S + 2 * grace_s + 30.0
    if minutes * 60.0 < need:
        raise ConfigError(f"--minutes: {minutes:g} min is too short for one of each store-day event with "
                          f"--grace-s {grace_s:g} (at least {need / 60:.1f} min)")


def _names(plan: DayPlan, names: list[str], stats, photos, meta) -> list[dict]:
    """The truth lines, slot indices turned into names and what the film saw added."""
    lines = [{"t": 0.0, "kind": "day", "version": EVENTS_VERSION, **meta}]
    for k, ev in enumerate(plan.events):
        line = dict(ev)
        own = set(ev["slots"])
        seen = stats.hand_slots.get(k, set())
        if ev["kind"] == "hand_pass":
            line["slots"] = [names[s] for s in sorted(seen)]
            line["target"] = names[ev["target"]]
        else:
            line["slots"] = [names[s] for s in ev["slots"]]
            if "hands" in ev:
                line["hand_over"] = [names[s] for s in sorted(seen - own)]
        for key in ("removals", "pieces", "classes"):
            if key in line:
                line[key] = {names[s]: v for s, v in line[key].items()}
        if ev["kind"] in ("stock", "restock"):
            line["source"] = _source(plan, ev["piece"], photos)
        elif ev["kind"] == "swap":
            line["new_source"] = _source(plan, ev["new_piece"], photos)
        lines.append(line)
    for k, e in enumerate(plan.ambient):
        line = e.truth()
        if e.kind == "glare":
            line["slots"] = [names[s] for s in sorted(stats.glare_slots.get(k, set()))]
        lines.append(line)
    for a in plan.actions:
        lines.append({**a, "slot": names[a["slot"]]})
    lines[1:] = sorted(lines[1:], key=lambda d: (d["t"], "action" in d))
    return lines


def _source(plan: DayPlan, pid: str, photos: dict[str, list[KeyedPhoto]] | None) -> str:
    spec = plan.pieces[pid]
    if photos is None:
        return "drawn"
    return photos[spec.cls][spec.photo].source + (" (mirrored)" if spec.mirror else "")


def make_day(out, minutes: float = 60.0, fps: float = 5.0, slots: tuple[int, int] = (3, 4),
             size: tuple[int, int] = (960, 540), seed: int = 0, photos=None, grace_s: float = 30.0) -> dict:
    """Film a store day and write its slot map and truth.

    Args:
        out: the ``.mp4`` path; ``<stem>.slots.yaml`` and ``<stem>.events.jsonl`` go beside it.
        minutes: video length; event counts scale with it (at least one of each).
        fps: frame rate.
        slots: grid (rows, cols), at least 3 slots.
        size: frame (width, height), even numbers.
        seed: the same seed and arguments give the same video and truth.
        photos: a ``DIR/<class>/*.jpg`` folder of product photos to stock the case with (read in place).
        grace_s: how long a piece may be away before it is missing; lift-and-returns stay shorter.

    Returns:
        ``{"video", "slots", "events": Path, "frames": int, "render_s": float (wall), "render_cpu_s": float,
        "frames_per_s": float (wall), "counts": {kind or action: n}}``.

    Raises:
        ConfigError: a bad argument (the message names the option).
        DataError: OpenCV could not write the video, or it did not read back whole.
    """
    _check_day_args(minutes, fps, grace_s)
    seconds = float(minutes) * 60.0
    rows, cols, width, height, _ = _validate(slots, seconds, fps, size, DEFAULT_CLASSES)
    layout = slot_layout(rows, cols, width, height)
    keyed = load_photos(photos) if photos is not None else None
    classes = list(keyed) if keyed is not None else list(DRAWN_CLASSES)
    counts = {c: len(v) for c, v in keyed.items()} if keyed is not None else None
    n_frames = int(round(seconds * fps))
    plan = plan_day(np.random.default_rng([int(seed), 20]), (rows, cols), seconds, float(fps), float(grace_s),
                    classes, counts, (width, height), [r for _, r in layout])
    side = layout[0][1][2] - layout[0][1][0]
    linings = [slot_lining(int(seed), k, side) for k in range(len(layout))]

    @functools.lru_cache(maxsize=64)  # the pieces in the case and those just lifted out: each drawn once
    def art(pid: str) -> PieceArt:
        spec = plan.pieces[pid]
        rng = np.random.default_rng([int(seed), 7, int(pid[1:])])
        if keyed is None:
            return drawn_piece(spec.cls, rng, side)
        return photo_piece(keyed[spec.cls][spec.photo], rng, side, spec.mirror)

    out = Path(out)
    if out.suffix.lower() != ".mp4":
        out = out.with_suffix(".mp4")
    out.parent.mkdir(parents=True, exist_ok=True)
    stats = film_day(out, plan, layout, width, height, float(fps), n_frames, int(seed), linings, art)
    slots_path = _write_slot_map(out, layout, width, height, rows, cols)
    names = [n for n, _ in layout]
    meta = {"video": out.name, "slot_map": slots_path.name, "fps": float(fps), "frames": n_frames,
            "seconds": n_frames / float(fps), "size": [width, height], "slots": names, "grace_s": float(grace_s),
            "seed": int(seed), "stocking": "photos" if keyed is not None else "drawn",
            "photos": str(photos) if photos is not None else None}
    lines = _names(plan, names, stats, keyed, meta)
    events_path = out.with_suffix(".events.jsonl")
    events_path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    _check_readback(out, n_frames, width, height)
    kinds: dict[str, int] = {}
    for line in lines[1:]:
        key = line.get("kind") or line["action"]
        kinds[key] = kinds.get(key, 0) + 1
    fps_render = n_frames / max(stats.seconds, 1e-9)
    logger.info("wrote %s: %d frames %dx%d at %g fps (%.0f frames/s rendered and encoded), %s", out, n_frames,
                width, height, fps, fps_render, ", ".join(f"{v} {k}" for k, v in sorted(kinds.items())))
    return {"video": out, "slots": slots_path, "events": events_path, "frames": n_frames,
            "render_s": stats.seconds, "render_cpu_s": stats.cpu_seconds, "frames_per_s": fps_render, "counts": kinds}

