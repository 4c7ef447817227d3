"""Slot map → pixel rects and crops: rescaling, polygons, frames of another layout, bad slots."""
import numpy as np
import pytest

from edge.config.device import SlotConfig
from edge.errors import ConfigError, DataError
from edge.loop.slots import SlotMap

SLOTS = (SlotConfig(name="a", rect=(0.0, 0.0, 0.5, 0.5)), SlotConfig(name="b", rect=(0.25, 0.5, 1.0, 1.0)))


def test_rects_and_crops_follow_the_frame_size():
    sm = SlotMap(SLOTS, camera="cam0")
    assert [p.box for p in sm.rects(640, 480)] == [(0, 0, 320, 240), (160, 240, 640, 480)]
    # A frame of another size rescales the same normalised slots.
    assert [p.box for p in sm.rects(1280, 720)] == [(0, 0, 640, 360), (320, 360, 1280, 720)]
    frame = np.arange(480 * 640 * 3, dtype=np.uint32).astype(np.uint8).reshape(480, 640, 3)
    a, b = sm.crop(frame)
    assert a.shape == (240, 320, 3) and b.shape == (240, 480, 3)
    np.testing.assert_array_equal(b, frame[240:480, 160:640])
    assert sm.names == ["a", "b"] and len(sm) == 2


def test_polygon_is_cropped_by_its_box_and_masked():
    tri = SlotConfig(name="tri", polygon=((0.0, 0.0), (1.0, 0.0), (0.0, 1.0)))
    sm = SlotMap([tri], camera="cam0", fill_bgr=(1, 2, 3))
    frame = np.full((100, 100, 3), 200, np.uint8)
    (crop,) = sm.crop(frame)
    assert crop.shape == (100, 100, 3)
    assert (crop[5, 5] == 200).all()            # inside the triangle
    assert tuple(crop[95, 95]) == (1, 2, 3)     # outside: the fill colour
    assert (frame == 200).all()                 # the frame itself is untouched


def test_slot_outside_the_frame_is_named():
    outside = SlotConfig.model_construct(name="r9c9", rect=(0.8, 0.8, 1.3, 1.0), polygon=None)
    with pytest.raises(ConfigError, match=r"camera cam0: slot 'r9c9' lies outside the frame"):
        SlotMap([SLOTS[0], outside], camera="cam0")


def test_slot_too_small_for_the_frame_is_named():
    sm = SlotMap([SlotConfig(name="tiny", rect=(0.0, 0.0, 0.01, 0.01))], camera="cam0")
    assert sm.rects(1920, 1080)[0].box == (0, 0, 20, 11)
    with pytest.raises(ConfigError, match=r"slot 'tiny' is only 2x2 px in a 160x120 frame"):
        sm.crop(np.ones((120, 160, 3), np.uint8))


def test_other_channel_counts_are_converted_or_reported():
    sm = SlotMap(SLOTS, camera="cam0")
    gray = np.full((48, 64), 77, np.uint8)
    a, _ = sm.crop(gray)
    assert a.shape == (24, 32, 3) and (a == 77).all()
    bgra = np.zeros((48, 64, 4), np.uint8)
    bgra[..., :3] = 9
    a, _ = sm.crop(bgra)
    assert a.shape == (24, 32, 3) and (a == 9).all()
    deep = (np.full((48, 64, 3), 256 * 100, np.uint16))
    assert (sm.crop(deep)[0] == 100).all()
    with pytest.raises(DataError, match=r"camera cam0 frame: unsupported image shape \(48, 64, 2\)"):
        sm.crop(np.zeros((48, 64, 2), np.uint8))
    with pytest.raises(DataError, match="empty"):
        sm.crop(np.zeros((0, 0, 3), np.uint8))


def test_repeated_or_no_slots():
    with pytest.raises(ConfigError, match=r"slot names repeat: \['a'\]"):
        SlotMap([SLOTS[0], SLOTS[0]], camera="cam0")
    with pytest.raises(ConfigError, match="no slots"):
        SlotMap([], camera="cam0")
