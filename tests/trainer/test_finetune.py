"""Fine-tuning from a model (``--init-from``) on product photos plus collected crops (``--extra-data``): the class
list is kept, a new class is refused unless ``--new-head``, a file that is not a gemsight model is refused before
anything is written, and the report counts the photos of each source."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from edge.errors import ConfigError, DataError
from edge.manifest import Manifest
from trainer.checkpoint import load_checkpoint
from trainer.train import train

from tests.helpers import TINY_RECIPE

#: A learning rate so small that the fine-tuned weights are still those it started from (a test can compare).
FROZEN = {**TINY_RECIPE, "epochs": 1, "lr": 1e-12, "min_lr": 0.0, "warmup_epochs": 0.0, "misses": 0}


def collected(tiny_data: Path, out: Path, classes=("ring", "watch"), per_class: int = 3) -> Path:
    """A folder as ``gemsight-deploy pull-crops`` leaves it: class folders of crops and the device's manifest."""
    for c in classes:
        (out / c).mkdir(parents=True)
        src = sorted((tiny_data / "train" / (c if c in ("ring", "watch", "empty") else "ring")).iterdir())
        for i, f in enumerate(src[:per_class]):
            shutil.copy(f, out / c / f"case-01_cam0_r0c{i}_2026030{i}T100000Z{f.suffix}")
    (out / "manifest.jsonl").write_text('{"file": "ring/x.jpg", "ts": 1}\n')
    return out


@pytest.mark.slow
def test_fine_tune_keeps_the_class_list_and_the_weights_and_counts_each_source(tiny_run, tiny_data, tmp_path, caplog):
    caplog.set_level("INFO")
    crops = collected(tiny_data, tmp_path / "crops")
    out = train(data=str(tiny_data), extra_data=[str(crops)], init_from=str(tiny_run), out=str(tmp_path / "ft"),
                **FROZEN)
    before, after = load_checkpoint(tiny_run / "best.pt"), load_checkpoint(out / "best.pt")
    assert after["classes"] == before["classes"]
    assert torch.allclose(after["model"]["conv1.weight"], before["model"]["conv1.weight"], atol=1e-6)
    report = json.loads((out / "report.json").read_text())
    data_train = sum(report["sources"][0]["train_per_class"].values())
    assert [(s["source"], s["train"]) for s in report["sources"]] == [("data", data_train), ("extra", 6)]
    assert report["sources"][1]["train_per_class"] == {"ring": 3, "watch": 3} and report["sources"][1]["val"] == 0
    assert report["train_counts"] == {c: report["sources"][0]["train_per_class"].get(c, 0) + (3 if c != "empty" else 0)
                                      for c in before["classes"]}
    assert report["init_from"] == str(tiny_run) and report["new_head"] is False
    manifest = Manifest.load(out / "manifest.json")
    assert manifest.version == "0.1.1" and manifest.provenance["init_from"] == str(tiny_run)   # a version of its own
    assert f"training photos: {data_train} from {tiny_data} (data; " in caplog.text
    assert f"6 from {crops} (extra)" in caplog.text and "outside class folders" not in caplog.text


@pytest.mark.slow
def test_a_new_class_is_refused_naming_the_classes_unless_new_head(tiny_run, tiny_data, tmp_path):
    crops = collected(tiny_data, tmp_path / "crops", classes=("ring", "pendant"))
    with pytest.raises(DataError, match=r"the data has class\(es\) pendant that the model from --init-from "
                                        rf"{tiny_run}/best.pt does not know \(its classes: empty, ring, watch\); "
                                        r"add --new-head"):
        train(data=str(tiny_data), extra_data=[str(crops)], init_from=str(tiny_run), out=str(tmp_path / "no"),
              **FROZEN)
    assert not (tmp_path / "no").exists()
    out = train(data=str(tiny_data), extra_data=[str(crops)], init_from=str(tiny_run / "best.pt"), new_head=True,
                out=str(tmp_path / "ft"), **FROZEN)
    before, after = load_checkpoint(tiny_run / "best.pt"), load_checkpoint(out / "best.pt")
    assert after["classes"] == ["empty", "pendant", "ring", "watch"]
    assert torch.allclose(after["model"]["conv1.weight"], before["model"]["conv1.weight"], atol=1e-6)
    head = [k for k in after["model"] if k.startswith("fc.") and k.endswith(".weight")]
    assert [after["model"][k].shape[0] for k in head] == [4]
    with pytest.raises(ConfigError, match=r"that model has --arch resnet18, not resnet34; a fine-tune keeps its "
                                          r"layers \(leave --arch out\)"):
        train(data=str(tiny_data), init_from=str(tiny_run), out=str(tmp_path / "x"), **{**FROZEN, "arch": "resnet34"})
    with pytest.raises(ConfigError, match="that model takes 32 px, not --img-size 48"):
        train(data=str(tiny_data), init_from=str(tiny_run), out=str(tmp_path / "x"), **{**FROZEN, "img_size": 48})
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("what", ["text", "onnx", "dict", "folder", "missing", "weights"])
def test_init_from_something_that_is_not_a_gemsight_model_is_refused_and_nothing_written(tiny_data, tmp_path, what):
    bad = tmp_path / "bad"
    bad.mkdir()
    target, message = bad / "best.pt", r"not a readable checkpoint"
    if what == "text":
        target.write_text("hello, I am not a model\n")
    elif what == "onnx":
        target = bad / "model.onnx"
        target.write_bytes(b"\x08\x07onnx")
        message = "an ONNX model holds no training state; give its run directory or best.pt"
    elif what == "dict":
        torch.save({"weights": torch.zeros(3)}, target)
        message = r"not a gemsight checkpoint \(no model/arch/manifest\)"
    elif what == "folder":
        target, message = bad, "no best.pt in that folder"
    elif what == "missing":
        target, message = bad / "nope.pt", "no such file or run directory"
    else:   # a checkpoint's shape with weights of another network
        manifest = Manifest(arch="resnet18", classes=("ring", "watch"), version="1.0.0").to_json()
        torch.save({"model": {"w": torch.zeros(2)}, "arch": "resnet18", "manifest": manifest,
                    "classes": ["ring", "watch"]}, target)
        message = "weights do not fit resnet18"
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=rf"--init-from .*{message}"):
        train(data=str(tiny_data), init_from=str(target), out=str(out), **FROZEN)
    assert not out.exists()


def test_new_head_needs_a_model_and_extra_classes_need_photos_in_data(tiny_data, tmp_path):
    with pytest.raises(ConfigError, match="--new-head replaces the last layer of the model given with --init-from"):
        train(data=str(tiny_data), new_head=True, out=str(tmp_path / "run"), **FROZEN)
    crops = collected(tiny_data, tmp_path / "crops", classes=("pendant",))
    with pytest.raises(DataError, match=r"--extra-data has class\(es\) pendant with no photo in --data"):
        train(data=str(tiny_data), extra_data=[str(crops)], out=str(tmp_path / "run"), **FROZEN)
    assert not (tmp_path / "run").exists()


def test_extra_repeat_trains_on_each_collected_photo_that_many_times_and_the_report_says_so(tiny_data, tmp_path):
    import argparse

    from trainer.finetune import load_sources, summary

    crops = collected(tiny_data, tmp_path / "crops")
    base = {"data": str(tiny_data), "val": None, "val_split": 0.2, "seed": 0, "extra_data": [str(crops)],
            "new_head": False}
    once = load_sources(argparse.Namespace(**base, extra_repeat=1), None)
    thrice = load_sources(argparse.Namespace(**base, extra_repeat=3), None)
    crop_rows = [r for r in thrice.train if str(crops) in str(r[0])]
    assert len(crop_rows) == 18 and len(thrice.train) == len(once.train) + 12 and thrice.val == once.val
    assert thrice.sources[1]["train"] == 6 and thrice.sources[1]["repeat"] == 3 and "repeat" not in once.sources[1]
    assert thrice.digest != once.digest                   # another training set, another run's provenance
    assert f"6 from {crops} (extra; each 3 times an epoch)" in summary(thrice.sources)


def test_extra_repeat_out_of_range_or_without_extra_data_is_refused_naming_it(tiny_data, tmp_path):
    crops = collected(tiny_data, tmp_path / "crops")
    for bad in (0, 101):
        with pytest.raises(ConfigError, match=rf"--extra-repeat must be a whole number from 1 to 100, got {bad}"):
            train(data=str(tiny_data), extra_data=[str(crops)], extra_repeat=bad, out=str(tmp_path / "run"), **FROZEN)
    with pytest.raises(ConfigError, match="--extra-repeat 4 repeats the photos of --extra-data; there are none"):
        train(data=str(tiny_data), extra_repeat=4, out=str(tmp_path / "run"), **FROZEN)
    assert not (tmp_path / "run").exists()
