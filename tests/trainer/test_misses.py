"""The misses: which validation photos a model gets wrong, the training photo each looks most like, the sheet."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from edge.errors import ConfigError, DataError
from tests.helpers import TINY_RECIPE
from trainer import misses
from trainer.evaluate import evaluate_model
from trainer.train import train

CLASSES = ("bracelet", "necklace", "ring")


def _probs(rows):
    return np.asarray(rows, np.float64)


def test_misses_are_the_wrong_photos_surest_first_up_to_the_limit():
    probs = _probs([[0.9, 0.05, 0.05],    # 0: bracelet, right
                    [0.7, 0.2, 0.1],      # 1: necklace called bracelet at 0.7
                    [0.1, 0.1, 0.8],      # 2: necklace called ring at 0.8
                    [0.1, 0.7, 0.2],      # 3: ring called necklace at 0.7 (ties with 1: input order)
                    [0.05, 0.05, 0.9]])   # 4: ring, right
    paths = [f"/d/val/{i}.jpg" for i in range(5)]
    found = misses.list_misses(paths, [0, 1, 1, 2, 2], probs, CLASSES, limit=10)
    assert [m["index"] for m in found] == [2, 1, 3]
    assert found[0] == {"index": 2, "path": "/d/val/2.jpg", "label": "necklace", "predicted": "ring",
                        "confidence": 0.8, "label_probability": 0.1}
    assert [m["index"] for m in misses.list_misses(paths, [0, 1, 1, 2, 2], probs, CLASSES, limit=2)] == [2, 1]
    assert misses.list_misses(paths, [0, 1, 1, 2, 2], probs, CLASSES, limit=0) == []
    assert misses.list_misses(paths, [0, 0, 2, 1, 2], probs, CLASSES, limit=10) == []   # every photo right


@pytest.mark.parametrize("paths, labels, probs", [
    (["a", "b"], [0], [[1, 0, 0], [0, 1, 0]]),          # a label short
    (["a"], [0], [[1, 0]]),                             # two columns for three classes
    (["a", "b"], [0, 1], [[1, 0, 0]]),                  # a row short
])
def test_misses_refuse_inputs_that_do_not_line_up(paths, labels, probs):
    with pytest.raises(DataError, match="do not match 3 classes"):
        misses.list_misses(paths, labels, np.asarray(probs, float), CLASSES, limit=5)


def test_the_nearest_training_photo_is_the_one_pointing_the_same_way():
    features = np.array([[1.0, 0.0], [3.0, 3.1], [0.0, 1.0]])   # validation photos 0, 1, 2
    train = np.array([[0.0, 10.0], [5.0, 5.0], [0.2, 0.0]])     # cosine, not distance: [5, 5] is far but aligned
    for batches in ([train], [train[:1], train[1:]], [train[:2], train[2:]]):   # one pass, in batches
        found = [{"index": 1, "path": "v1"}, {"index": 0, "path": "v0"}, {"index": 2, "path": "v2"}]
        misses.add_nearest(found, features, iter(batches), ["t0", "t1", "t2"], [1, 0, 2], CLASSES)
        assert [(m["nearest_train"]["path"], m["nearest_train"]["label"]) for m in found] == \
            [("t1", "bracelet"), ("t2", "ring"), ("t0", "necklace")]
        assert found[1]["nearest_train"]["similarity"] == 1.0 and 0.99 < found[0]["nearest_train"]["similarity"] < 1.0
    with pytest.raises(DataError, match="features of 2 training photos for 3 paths"):
        misses.add_nearest(found, features, [train[:2]], ["t0", "t1", "t2"], [1, 0, 2], CLASSES)


def test_report_paths_are_relative_to_the_data_folder(tmp_path):
    inside, outside = tmp_path / "data" / "val" / "ring" / "a.jpg", tmp_path / "elsewhere" / "b.jpg"
    found = [{"index": 3, "path": str(inside), "label": "ring", "predicted": "bracelet", "confidence": 0.9,
              "label_probability": 0.05, "nearest_train": {"path": str(outside), "label": "bracelet", "similarity": 0.9}}]
    [entry] = misses.for_report(found, tmp_path / "data")
    assert entry["path"] == "val/ring/a.jpg" and "index" not in entry
    assert entry["nearest_train"]["path"] == outside.as_posix()   # not under the data folder: kept whole
    assert found[0]["path"] == str(inside)                        # the caller's list is left as it was


def _photo(path, colour):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((40, 60, 3), colour, np.uint8))
    return str(path)


def test_the_sheet_shows_each_miss_beside_its_nearest_training_photo(tmp_path):
    found = [{"path": _photo(tmp_path / f"v{i}.png", (0, 0, 200)), "label": "necklace", "predicted": "bracelet",
              "confidence": 0.9 - i / 10, "nearest_train": {"path": _photo(tmp_path / f"t{i}.png", (0, 200, 0)),
                                                           "label": "bracelet", "similarity": 0.98}}
             for i in range(5)]
    sheet = cv2.imread(str(misses.plot_misses(found, tmp_path / "out" / "misses.png", total=7, images=50)))
    assert sheet is not None
    thumb, per_row = misses.THUMB, misses.PER_ROW
    assert sheet.shape[1] > per_row * 2 * thumb and sheet.shape[0] > 2 * thumb   # 4 pairs a row, 2 rows
    red = (sheet[..., 2] > 150) & (sheet[..., 1] < 50)
    green = (sheet[..., 1] > 150) & (sheet[..., 2] < 50)
    # Each 60 x 40 photo is fitted into a square thumbnail: 112 x 75 pixels of its colour, five of each.
    assert red.sum() == pytest.approx(5 * thumb * 75, rel=0.05) and green.sum() == pytest.approx(5 * thumb * 75, rel=0.05)
    alone = [{k: v for k, v in m.items() if k != "nearest_train"} for m in found]
    single = cv2.imread(str(misses.plot_misses(alone, tmp_path / "alone.png", total=5, images=50)))
    assert ((single[..., 1] > 150) & (single[..., 2] < 50)).sum() == 0    # no training photo drawn


def test_the_sheet_refuses_nothing_to_draw_and_names_a_photo_it_cannot_read_or_a_place_it_cannot_write(tmp_path):
    with pytest.raises(DataError, match="no misses"):
        misses.plot_misses([], tmp_path / "m.png", total=0, images=9)
    gone = {"path": str(tmp_path / "gone.jpg"), "label": "ring", "predicted": "bracelet", "confidence": 0.5}
    with pytest.raises(DataError, match="gone.jpg"):
        misses.plot_misses([gone], tmp_path / "m.png", total=1, images=9)
    assert not (tmp_path / "m.png").exists()
    here = {**gone, "path": _photo(tmp_path / "here.png", (0, 0, 200))}
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match=r"misses sheet .*file/m.png: cannot make its folder"):
        misses.plot_misses([here], tmp_path / "file" / "m.png", total=1, images=9)
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(DataError, match=r"dir.png: is a folder"):
        misses.plot_misses([here], tmp_path / "dir.png", total=1, images=9)


@pytest.mark.slow
def test_a_run_reports_its_misses_with_their_nearest_training_photos(tiny_run):
    report = json.loads((tiny_run / "report.json").read_text())
    cm = np.array(report["confusion_matrix"])
    assert report["missed"] == cm.sum() - np.trace(cm)
    assert len(report["misses"]) == min(48, report["missed"])
    assert (tiny_run / "misses.png").is_file() == (report["missed"] > 0)
    data = tiny_run.parent / "data"
    confidences = [m["confidence"] for m in report["misses"]]
    assert confidences == sorted(confidences, reverse=True)
    for miss in report["misses"]:
        assert miss["label"] != miss["predicted"] and miss["path"].startswith(f"val/{miss['label']}/")
        assert (data / miss["path"]).is_file() and (data / miss["nearest_train"]["path"]).is_file()
        assert miss["nearest_train"]["path"].startswith(f"train/{miss['nearest_train']['label']}/")
        assert miss["confidence"] > miss["label_probability"]
    predicted = {(m["label"], m["predicted"]) for m in report["misses"]}
    classes = report["classes"]
    assert all(cm[classes.index(t), classes.index(p)] > 0 for t, p in predicted)   # each is a confusion cell


@pytest.mark.slow
def test_evaluate_lists_the_same_misses_and_draws_them(tiny_run, tiny_data, tmp_path):
    report = evaluate_model(tiny_run / "model.onnx", tiny_data, batch_size=4, threads=1, misses=3,
                            misses_png=tmp_path / "m.png")
    trained = json.loads((tiny_run / "report.json").read_text())
    assert report["missed"] == trained["missed"] and len(report["misses"]) == min(3, trained["missed"])
    assert [m["path"] for m in report["misses"]] == [m["path"] for m in trained["misses"][:3]]
    assert (tmp_path / "m.png").is_file() == (trained["missed"] > 0)
    with pytest.raises(ConfigError, match="--misses"):
        evaluate_model(tiny_run / "model.onnx", tiny_data, misses=-1)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="--misses-png .*file/m.png: cannot make its folder"):
        evaluate_model(tiny_run / "nowhere.onnx", tiny_data, misses_png=tmp_path / "file" / "m.png")  # said first


def test_a_sheet_that_cannot_be_written_costs_the_run_nothing_but_the_picture(tiny_data, tmp_path, caplog):
    (tmp_path / "run" / "misses.png").mkdir(parents=True)   # in the way of the sheet
    run = train(data=str(tiny_data), out=str(tmp_path / "run"), **{**TINY_RECIPE, "epochs": 1})
    report = json.loads((run / "report.json").read_text())
    assert report["missed"] > 0 and len(report["misses"]) == min(48, report["missed"]) and (run / "model.onnx").is_file()
    assert "no misses sheet" in caplog.text and "is a folder" in caplog.text


def test_misses_zero_leaves_out_the_list_and_the_sheet_and_negative_is_refused(tiny_data, tmp_path):
    run = train(data=str(tiny_data), out=str(tmp_path / "run"), **{**TINY_RECIPE, "epochs": 1}, misses=0)
    report = json.loads((run / "report.json").read_text())
    assert report["misses"] == [] and report["missed"] >= 0 and not (run / "misses.png").exists()
    with pytest.raises(ConfigError, match="--misses must not be negative"):
        train(data=str(tiny_data), out=str(tmp_path / "run2"), **TINY_RECIPE, misses=-1)
