"""``--annotate OUT.mp4``: frames with slot boxes, labels, scores and a counts panel drawn on them.

Colours say how sure the loop is: green for a stable label, amber while a label is still settling,
grey for ``unknown``, a thin dark box for ``empty``.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from edge.contracts import FrameResult
from edge.errors import ConfigError
from edge.loop.slots import PixelSlot

logger = logging.getLogger(__name__)

STABLE = (60, 200, 60)      # BGR
SETTLING = (0, 190, 255)
UNKNOWN = (160, 160, 160)
EMPTY = (90, 90, 90)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _colour(label: str, stable: bool, unknown_label: str, empty_label: str) -> tuple[int, int, int]:
    if label == unknown_label:
        return UNKNOWN
    if label == empty_label:
        return EMPTY
    return STABLE if stable else SETTLING


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float, colour: tuple[int, int, int]) -> None:
    # A dark outline keeps the text readable on any background.
    cv2.putText(img, text, org, _FONT, scale, (0, 0, 0), max(2, int(3 * scale)), cv2.LINE_AA)
    cv2.putText(img, text, org, _FONT, scale, colour, max(1, int(1.2 * scale)), cv2.LINE_AA)


def draw(frame: np.ndarray, rects: Sequence[PixelSlot], result: FrameResult, *, title: str = "",
         unknown_label: str = "unknown", empty_label: str = "empty") -> np.ndarray:
    """A copy of ``frame`` with every slot's box, label and score, and a panel of counts.

    Args:
        frame: BGR uint8 frame.
        rects: the slots in pixels for this frame (``SlotMap.rects(w, h)``), in result order.
        result: this frame's :class:`~edge.contracts.FrameResult`.
        title: first line of the panel (camera id, frame number ...).
    """
    out = frame.copy()
    h, w = out.shape[:2]
    scale = max(0.35, min(1.0, w / 1600))
    for ps, slot in zip(rects, result.slots):
        colour = _colour(slot.label, slot.stable, unknown_label, empty_label)
        thick = 1 if slot.label == empty_label else 2 if not slot.stable else 3
        cv2.rectangle(out, (ps.x0, ps.y0), (ps.x1 - 1, ps.y1 - 1), colour, thick)
        if slot.label != empty_label:
            _text(out, f"{slot.label} {slot.score:.2f}", (ps.x0 + 4, ps.y0 + int(22 * scale) + 2), scale, colour)
        _text(out, slot.name, (ps.x0 + 4, ps.y1 - 6), scale * 0.7, (230, 230, 230))
    lines = ([title] if title else []) + [f"{k}: {v}" for k, v in result.counts.items()
                                          if v and k != empty_label]
    lines.append(f"items: {result.items}")
    line_h = int(26 * scale) + 4
    panel_w = int(230 * scale) + 20
    panel_h = line_h * len(lines) + 10
    x0, y0 = w - panel_w - 8, 8
    if x0 > 0 and y0 + panel_h < h:
        roi = out[y0:y0 + panel_h, x0:x0 + panel_w]
        roi[:] = (roi * 0.35).astype(np.uint8)  # darken rather than hide the scene
        for i, line in enumerate(lines):
            _text(out, line, (x0 + 8, y0 + line_h * (i + 1)), scale, (255, 255, 255))
    return out


class AnnotatedWriter:
    """Writes annotated frames to an MP4 (one file per camera when a loop has several).

    Args:
        path: output file (``.mp4``; ``.avi`` also works).
        fps: frame rate written into the file.
    """

    def __init__(self, path: str | Path, fps: float = 10.0) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in (".mp4", ".avi", ".mkv"):
            raise ConfigError(f"--annotate {self.path}: use a .mp4, .avi or .mkv file name")
        if not self.path.parent.is_dir():
            raise ConfigError(f"--annotate {self.path}: folder {self.path.parent} does not exist")
        self.fps = float(fps) if fps and fps > 0 else 10.0
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self.frames = 0

    def write(self, image: np.ndarray) -> None:
        """Append one BGR frame (frames of another size are resized to the first one's)."""
        h, w = image.shape[:2]
        if self._writer is None:
            fourcc = cv2.VideoWriter_fourcc(*("mp4v" if self.path.suffix.lower() == ".mp4" else "MJPG"))
            self._writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, (w, h))
            if not self._writer.isOpened():
                raise ConfigError(f"--annotate {self.path}: OpenCV cannot write this file")
            self._size = (w, h)
        if (w, h) != self._size:
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(image)
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            logger.info("annotated video: %s (%d frames)", self.path, self.frames)

    def __enter__(self) -> "AnnotatedWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def per_camera_paths(path: str | Path, cameras: Sequence[str]) -> dict[str, Path]:
    """``OUT.mp4`` for one camera; ``OUT-<camera>.mp4`` for each when there are several."""
    path = Path(path)
    if len(cameras) == 1:
        return {cameras[0]: path}
    return {cam: path.with_name(f"{path.stem}-{cam}{path.suffix}") for cam in cameras}
