"""Annotated video: boxes, labels and counts drawn, written as a real MP4 and read back."""
import cv2
import numpy as np
import pytest

from edge.config.device import SlotConfig
from edge.errors import ConfigError
from edge.loop.annotate import SETTLING, STABLE, AnnotatedWriter, draw, per_camera_paths
from edge.loop.postprocess import Postprocessor
from edge.loop.slots import SlotMap

CLASSES = ("ring", "watch", "empty")


def _result(frames=1):
    post = Postprocessor(CLASSES, ["a", "b", "c"], window=3)
    logits = np.array([[9, 0, 0], [0, 9, 0], [0, 0, 9]], np.float32)
    for _ in range(frames):
        res = post.update(logits)
    return res


def _slots():
    return SlotMap([SlotConfig(name="a", rect=(0.05, 0.1, 0.3, 0.5)), SlotConfig(name="b", rect=(0.35, 0.1, 0.6, 0.5)),
                    SlotConfig(name="c", rect=(0.05, 0.55, 0.3, 0.95))], camera="cam0")


def test_draw_boxes_labels_and_panel():
    frame = np.full((360, 640, 3), 128, np.uint8)
    rects = _slots().rects(640, 360)
    settling = draw(frame, rects, _result(1), title="cam0 #0")
    stable = draw(frame, rects, _result(3), title="cam0 #2")
    assert (frame == 128).all()  # drawing works on a copy
    a = rects[0]
    assert tuple(settling[a.y0 + 40, a.x0]) == SETTLING     # left edge of slot a's box
    assert tuple(stable[a.y0 + 40, a.x0]) == STABLE
    assert (stable[10:60, 500:630] != 128).any()             # the counts panel, top right
    assert (stable[rects[2].y0 + 40, rects[2].x0] != STABLE).any()  # empty is not drawn as an item


def test_writer_writes_a_readable_mp4(tmp_path):
    out = tmp_path / "ann.mp4"
    frame = np.full((240, 320, 3), 90, np.uint8)
    with AnnotatedWriter(out, fps=10) as writer:
        for i in range(8):
            writer.write(draw(frame, _slots().rects(320, 240), _result(i + 1)))
        writer.write(np.zeros((100, 100, 3), np.uint8))  # another size is resized, not refused
    cap = cv2.VideoCapture(str(out))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 9 and int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 320


def test_bad_output_paths(tmp_path):
    with pytest.raises(ConfigError, match="use a .mp4"):
        AnnotatedWriter(tmp_path / "out.gif")
    with pytest.raises(ConfigError, match="does not exist"):
        AnnotatedWriter(tmp_path / "missing" / "out.mp4")


def test_per_camera_paths(tmp_path):
    assert per_camera_paths(tmp_path / "o.mp4", ["cam0"]) == {"cam0": tmp_path / "o.mp4"}
    assert per_camera_paths(tmp_path / "o.mp4", ["a", "b"])["b"] == tmp_path / "o-b.mp4"
