"""Bad and unusual input: odd image formats load, broken files are skipped and listed, bad layouts stop."""
from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.errors import ConfigError, DataError
from edge.preprocess import load_image
from trainer.data import class_weights, load_dataset, load_eval_set


def _split_image(w: int = 40, h: int = 20) -> np.ndarray:
    """Left half red, right half blue (BGR)."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2] = (0, 0, 255)
    img[:, w // 2:] = (255, 0, 0)
    return img


def _with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """Insert an APP1 EXIF segment holding only the Orientation tag right after SOI."""
    ifd = struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0)
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8) + ifd
    payload = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def _jpeg(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return buf.tobytes()


def test_png_named_jpg_loads(tmp_path):
    ok, buf = cv2.imencode(".png", _split_image())
    path = tmp_path / "photo.jpg"
    path.write_bytes(buf.tobytes())
    img = load_image(path)
    assert img.shape == (20, 40, 3) and img.dtype == np.uint8
    assert np.array_equal(img, _split_image())


def test_grayscale_rgba_and_16bit_load_as_bgr8(tmp_path):
    gray = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (10, 1))
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    rgba = np.dstack([_split_image(), np.full((20, 40), 128, np.uint8)])
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba)
    deep = (_split_image().astype(np.uint16) * 257)
    cv2.imwrite(str(tmp_path / "deep.png"), deep)

    g = load_image(tmp_path / "gray.png")
    assert g.shape == (10, 25, 3) and np.array_equal(g[..., 0], gray) and np.array_equal(g[..., 2], gray)
    assert np.array_equal(load_image(tmp_path / "rgba.png"), _split_image())
    d = load_image(tmp_path / "deep.png")
    assert d.dtype == np.uint8 and np.array_equal(d, _split_image())


def test_exif_rotated_jpeg_is_turned_upright(tmp_path):
    path = tmp_path / "rotated.jpg"
    path.write_bytes(_with_exif_orientation(_jpeg(_split_image()), 6))  # 6: rotate 90 degrees clockwise
    img = load_image(path)
    assert img.shape == (40, 20, 3)
    expected = cv2.rotate(_split_image(), cv2.ROTATE_90_CLOCKWISE)  # red ends up on top
    assert np.abs(img.astype(int) - expected.astype(int)).mean() < 8


def _plant_bad_files(class_dir: Path, good: Path) -> dict[str, str]:
    data = good.read_bytes()
    (class_dir / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (class_dir / "notes.txt").write_text("not an image")
    (class_dir / "empty.jpg").write_bytes(b"")
    (class_dir / "garbage.png").write_bytes(os.urandom(300))
    return {"truncated.jpg", "notes.txt", "empty.jpg", "garbage.png"}


def test_broken_files_are_skipped_and_listed(tiny_copy, caplog):
    ring = tiny_copy / "train" / "ring"
    names = _plant_bad_files(ring, next(ring.glob("*.jpg")))
    good_before = len(list(ring.glob("ring_*.jpg")))
    # Odd-but-valid files must be kept, not skipped.
    cv2.imwrite(str(ring / "gray.png"), np.full((32, 32), 90, np.uint8))
    shutil.copy(ring / "gray.png", ring / "png_named.jpg")
    split = load_dataset(tiny_copy)
    skipped = {Path(s["path"]).name for s in split.skipped}
    assert skipped == names
    assert all(s["reason"] for s in split.skipped)
    assert split.counts("train")[split.classes.index("ring")] == good_before + 2
    for name in names:
        assert name in caplog.text


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file_is_skipped(tiny_copy):
    bad = tiny_copy / "train" / "watch" / "locked.jpg"
    shutil.copy(next((tiny_copy / "train" / "watch").glob("*.jpg")), bad)
    bad.chmod(0)
    split = load_dataset(tiny_copy)
    assert [Path(s["path"]).name for s in split.skipped] == ["locked.jpg"]


def test_class_folder_without_usable_image_stops(tiny_copy):
    empty = tiny_copy / "train" / "brooch"
    empty.mkdir()
    (empty / "broken.jpg").write_bytes(b"nope")
    with pytest.raises(DataError, match="brooch"):
        load_dataset(tiny_copy)


def test_validation_class_missing_from_training_stops(tiny_copy):
    shutil.copytree(tiny_copy / "val" / "ring", tiny_copy / "val" / "pendant")
    with pytest.raises(DataError, match="pendant"):
        load_dataset(tiny_copy)


def test_fewer_than_two_classes_stops(tiny_copy, tmp_path):
    one = tmp_path / "one"
    shutil.copytree(tiny_copy / "train" / "ring", one / "ring")
    with pytest.raises(DataError, match="at least 2 classes"):
        load_dataset(one)


def test_flat_folder_with_val_split_and_csv(tiny_copy, tmp_path):
    flat = load_dataset(tiny_copy / "train", val_split=0.25, seed=3)
    counts = [n + m for n, m in zip(flat.counts("train"), flat.counts("val"))]
    assert counts == [9, 9, 9] and all(n >= 2 for n in flat.counts("val"))
    rows = ["path,label"] + [f"{p.relative_to(tiny_copy)},{p.parent.name}"
                             for p in sorted((tiny_copy / "train").rglob("*.jpg"))]
    (tiny_copy / "set.csv").write_text("\n".join(rows) + "\n")
    from_csv = load_dataset(tiny_copy / "set.csv", val=tiny_copy / "val")
    assert from_csv.classes == ("empty", "ring", "watch") and len(from_csv.train) == 27
    (tiny_copy / "bad.csv").write_text("only-a-path.jpg\n")
    with pytest.raises(DataError, match="bad.csv:1"):
        load_dataset(tiny_copy / "bad.csv")


def test_eval_set_refuses_unknown_class(tiny_data):
    samples, skipped = load_eval_set(tiny_data, ("empty", "ring", "watch"))
    assert len(samples) == 9 and not skipped
    with pytest.raises(DataError, match="watch"):
        load_eval_set(tiny_data, ("empty", "ring"))


def test_class_weights_follow_frequencies():
    w = class_weights([10, 30, 60], "auto")
    assert w[0] > w[1] > w[2] and abs(sum(n * x for n, x in zip([10, 30, 60], w)) - 100) < 1e-9
    assert class_weights([1, 2], "none") == [1.0, 1.0]
    assert class_weights([1, 2], "2,0.5") == [2.0, 0.5]
    with pytest.raises(ConfigError, match="2 positive numbers"):
        class_weights([1, 2], "1,2,3")
    with pytest.raises(ConfigError, match="class-weights"):
        class_weights([1, 2], "heavy")


@pytest.mark.parametrize("resize", ["stretch", "shorter_center_crop", "letterbox"])
def test_cached_images_give_the_same_samples_without_reading_the_files_again(tiny_data, tmp_path, resize):
    """``--cache-images``: the second epoch comes from memory and is the same, augmentation included."""
    import functools

    import torch

    from edge.manifest import InputSpec
    from edge.preprocess import resize_to
    from trainer.data import ImageDataset
    from trainer.recipe import ClassificationPresetTrain

    spec = InputSpec(size=(24, 32), resize=resize)
    samples = load_dataset(tiny_data).train[:6]
    copies = []
    for i, (path, label) in enumerate(samples):   # copies this test may delete
        copies.append((tmp_path / f"{i}{Path(path).suffix}", label))
        shutil.copy(path, copies[-1][0])

    def epoch(ds):
        torch.manual_seed(7)
        return [ds[i][0] for i in range(len(ds))]

    plain = ImageDataset(copies, ClassificationPresetTrain(spec=spec))
    cached = ImageDataset(copies, ClassificationPresetTrain(spec=spec),
                          prepare=functools.partial(resize_to, spec=spec), cache=True)
    first = epoch(cached)
    for path, _ in copies:
        os.unlink(path)
    second = epoch(cached)                       # the files are gone: only the cache can answer
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    for (path, _), orig in zip(copies, samples):
        shutil.copy(orig[0], path)
    for a, b in zip(epoch(plain), second):      # the same tensors as decoding every time
        assert torch.equal(a, b)
