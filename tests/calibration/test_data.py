import logging

import numpy as np
import pytest

from calibration.data import candidate_order, load_calibration_set, load_labelled_set
from edge.contracts import DEFAULT_CLASSES
from edge.errors import CalibrationError, DataError
from edge.manifest import InputSpec
from tests.helpers import make_images

SPEC = InputSpec(size=(32, 32))


def test_stratified_round_robin_and_deterministic(calib_images):
    order, stratified = candidate_order(calib_images)
    assert stratified
    # The first 8 draws are one image from each class folder.
    assert sorted(p.parent.name for p in order[:8]) == sorted(DEFAULT_CLASSES)
    assert candidate_order(calib_images)[0] == order
    assert candidate_order(calib_images, seed=1)[0] != order


def test_sample_records_files_digest_and_skips_corrupt(calib_images):
    a = load_calibration_set(calib_images, SPEC, count=49)  # 48 good images + 1 corrupt exist
    b = load_calibration_set(calib_images, SPEC, count=49)
    assert a.batch.shape == (48, 3, 32, 32) and a.batch.dtype == np.float32
    assert a.digest == b.digest and len(a.digest) == 64
    assert [p.name for p, _ in a.skipped] == ["zz-corrupt.jpg"]
    described = a.describe()
    assert described["count"] == 48 and described["skipped"][0]["path"] == "ring/zz-corrupt.jpg"
    assert all(len(item["sha256"]) == 64 for item in described["images"])


def test_digest_changes_with_content(tmp_path):
    root = make_images(tmp_path / "imgs", per_class=5)
    before = load_calibration_set(root, SPEC, count=40).digest
    (root / "ring" / "000.png").write_bytes((root / "ring" / "001.png").read_bytes())
    assert load_calibration_set(root, SPEC, count=40).digest != before


def test_fewer_than_count_warns(calib_images, caplog):
    with caplog.at_level(logging.WARNING):
        s = load_calibration_set(calib_images, SPEC, count=512)
    assert len(s.files) == 48
    assert "asked for --count 512" in caplog.text


def test_below_minimum_stops(tmp_path):
    root = make_images(tmp_path / "few", per_class=3)  # 24 images
    with pytest.raises(CalibrationError, match="only 24 readable calibration image"):
        load_calibration_set(root, SPEC, count=100)


def test_flat_folder(tmp_path):
    root = make_images(tmp_path / "x", per_class=5, classes=("a",))
    flat = root / "a"
    order, stratified = candidate_order(flat)
    assert not stratified and len(order) == 5


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_calibration_set(tmp_path / "nope", SPEC, count=32)


def test_labelled_set(val_images):
    s = load_labelled_set(val_images, SPEC, DEFAULT_CLASSES)
    assert len(s.files) == 16 and s.labels.tolist().count(DEFAULT_CLASSES.index("watch")) == 2
    for path, label in zip(s.files, s.labels):
        assert path.parent.name == DEFAULT_CLASSES[label]


def test_labelled_set_unknown_class(tmp_path):
    root = make_images(tmp_path / "v", per_class=1, classes=("ring", "tiara"))
    with pytest.raises(DataError, match="tiara"):
        load_labelled_set(root, SPEC, DEFAULT_CLASSES)


def test_count_below_minimum(calib_images):
    with pytest.raises(CalibrationError, match="--count 8 is too small"):
        load_calibration_set(calib_images, SPEC, count=8)
