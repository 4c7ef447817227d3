"""Pictures of generated data: a dataset's contact sheet and a video frame with its slots drawn."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np

from edge.contracts import DEFAULT_CLASSES
from edge.errors import ConfigError, DataError
from edge.preprocess import list_images, load_image

logger = logging.getLogger(__name__)

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _class_dirs(dataset_dir: Path) -> list[Path]:
    """Class folders of a dataset (its ``train`` split if it has one), default classes first."""
    root = dataset_dir / "train" if (dataset_dir / "train").is_dir() else dataset_dir
    if not root.is_dir():
        raise DataError(f"{dataset_dir}: not a dataset folder")
    dirs = [d for d in root.iterdir() if d.is_dir()]
    order = {c: i for i, c in enumerate(DEFAULT_CLASSES)}
    return sorted(dirs, key=lambda d: (order.get(d.name, len(order)), d.name))


def contact_sheet(dataset_dir, out_png, per_class: int = 8, thumb: int = 96) -> Path:
    """A PNG grid of a dataset: one labelled row per class, ``per_class`` images spread across it.

    Args:
        dataset_dir: an image-folder dataset (``train``/``val`` splits or class folders directly).
        out_png: where to write the PNG.
        per_class: thumbnails per row.
        thumb: thumbnail side in pixels.

    Returns:
        ``out_png`` as a :class:`~pathlib.Path`.

    Raises:
        ConfigError: ``per_class`` below 1.
        DataError: no class folders with images.
    """
    if per_class < 1:
        raise ConfigError(f"--per-class: must be at least 1, got {per_class}")
    dataset_dir, out_png = Path(dataset_dir), Path(out_png)
    rows = []
    for d in _class_dirs(dataset_dir):
        files = list_images(d)
        if files:
            pick = [files[int(i)] for i in np.linspace(0, len(files) - 1, min(per_class, len(files)))]
            rows.append((d.name, len(files), pick))
    if not rows:
        raise DataError(f"{dataset_dir}: no class folders with images")
    label_w, gap, head = 150, 4, 34
    width = label_w + per_class * (thumb + gap) + gap
    height = head + len(rows) * (thumb + gap) + gap
    sheet = np.full((height, width, 3), 245, np.uint8)
    cv2.putText(sheet, f"{dataset_dir.name}: {len(rows)} classes", (8, 23), _FONT, 0.6, (40, 40, 40), 1, cv2.LINE_AA)
    for r, (name, count, files) in enumerate(rows):
        y = head + r * (thumb + gap)
        cv2.putText(sheet, name, (8, y + thumb // 2), _FONT, 0.6, (20, 20, 20), 2, cv2.LINE_AA)
        cv2.putText(sheet, f"{count} images", (8, y + thumb // 2 + 22), _FONT, 0.45, (90, 90, 90), 1, cv2.LINE_AA)
        for c, f in enumerate(files):
            img = cv2.resize(load_image(f), (thumb, thumb), interpolation=cv2.INTER_AREA)
            x = label_w + gap + c * (thumb + gap)
            sheet[y:y + thumb, x:x + thumb] = img
    out_png.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out_png), sheet):
        raise DataError(f"{out_png}: cannot write PNG")
    logger.info("contact sheet of %s (%d classes) written to %s", dataset_dir, len(rows), out_png)
    return out_png


def load_slots(path) -> list[tuple[str, list[float]]]:
    """Slots from a slot map (``slots:`` at the top) or a device config (``cameras[0].slots``).

    Raises:
        ConfigError: the file is missing, not YAML, or has no valid slots; names the file and field.
    """
    from edge.config.yaml_files import load_yaml  # noqa: PLC0415 - bounded, refuses duplicate keys

    path = Path(path)
    doc = load_yaml(path, "slot map")
    slots = None
    if isinstance(doc, dict):
        slots = doc.get("slots")
        if slots is None and isinstance(doc.get("cameras"), list) and doc["cameras"]:
            slots = doc["cameras"][0].get("slots")
    if not isinstance(slots, list) or not slots:
        raise ConfigError(f"{path}: slots: expected a non-empty list of {{name, rect}}")
    out = []
    for i, s in enumerate(slots):
        rect = s.get("rect") if isinstance(s, dict) else None
        if not (isinstance(rect, list) and len(rect) == 4 and all(isinstance(v, (int, float)) for v in rect)):
            raise ConfigError(f"{path}: slots[{i}].rect: expected [x0, y0, x1, y1]")
        out.append((str(s.get("name", f"slot{i}")), [float(v) for v in rect]))
    return out


def read_frame(video, index: int = 0) -> np.ndarray:
    """Frame ``index`` of a video (decoded sequentially: seeking is unreliable in some codecs)."""
    cap = cv2.VideoCapture(str(video))
    try:
        if not cap.isOpened():
            raise DataError(f"{video}: cannot open video")
        frame = None
        for _ in range(index + 1):
            ok, frame = cap.read()
            if not ok:
                raise DataError(f"{video}: has no frame {index}")
        return frame
    finally:
        cap.release()


def preview_frame(video, slots_yaml, out_png, frame_index: int = 0) -> Path:
    """Write one video frame with its slot rectangles and names (and true labels when a truth file is beside).

    Raises:
        ConfigError: the slot map is unreadable.
        DataError: the video is unreadable or shorter than ``frame_index``.
    """
    video, out_png = Path(video), Path(out_png)
    if frame_index < 0:
        raise ConfigError(f"--index: must be >= 0, got {frame_index}")
    slots = load_slots(slots_yaml)
    frame = read_frame(video, frame_index)
    truth = {}
    truth_path = video.with_suffix(".truth.jsonl")
    if truth_path.is_file():
        for line in truth_path.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("frame") == frame_index:
                truth = rec.get("slots", {})
                break
    h, w = frame.shape[:2]
    for name, (x0, y0, x1, y1) in slots:
        p0, p1 = (int(round(x0 * w)), int(round(y0 * h))), (int(round(x1 * w)) - 1, int(round(y1 * h)) - 1)
        cv2.rectangle(frame, p0, p1, (0, 255, 255), 2)
        label = f"{name} {truth[name]}" if name in truth else name
        (tw, th), _ = cv2.getTextSize(label, _FONT, 0.5, 1)
        cv2.rectangle(frame, (p0[0], p0[1]), (p0[0] + tw + 6, p0[1] + th + 8), (0, 0, 0), -1)
        cv2.putText(frame, label, (p0[0] + 3, p0[1] + th + 4), _FONT, 0.5, (0, 255, 255), 1, cv2.LINE_AA)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out_png), frame):
        raise DataError(f"{out_png}: cannot write PNG")
    logger.info("frame %d of %s with %d slots written to %s", frame_index, video, len(slots), out_png)
    return out_png
