"""``bench/real_photos.py`` end to end on a tiny synthetic folder (never the real photos): 1 seed, 1 epoch."""
from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture()
def _one_torch_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_real_photos_bench_runs_end_to_end_and_writes_its_json(tmp_path, capsys, _one_torch_thread):
    from bench.real_photos import main
    from trainer.synth import make_images

    data = make_images(tmp_path / "photos", classes=("ring", "watch", "empty"), per_class=16, size=32,
                       val_fraction=0.25, seed=0)
    out = tmp_path / "results" / "real_photos_test.json"
    assert main(["--data", str(data), "--seeds", "1", "--first-seed", "2", "--epochs", "1", "--img-size", "32",
                 "--batch-size", "8", "--workers", "0", "--int8-plain", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["recipes"]) == {"gemsight", "reference"}
    for recipe in result["recipes"].values():
        assert len(recipe["runs"]) == 1 and 0.0 <= recipe["summary"]["top1"]["mean"] <= 1.0
        assert recipe["runs"][0]["seed"] == 2   # --first-seed 2: a later process can run the later seeds
        run = recipe["runs"][0]
        # Which class each recipe loses, and to which: the best epoch's confusion matrix and recall.
        assert sum(map(sum, run["confusion"])) == result["config"]["val_images"]
        assert set(run["recall"]) == set(result["config"]["classes"])
        for i, name in enumerate(result["config"]["classes"]):
            assert run["recall"][name] == pytest.approx(run["confusion"][i][i] / sum(run["confusion"][i]))
        assert set(recipe["summary"]["recall"]) == set(result["config"]["classes"])
        assert sum(run["confusion"][i][i] for i in range(len(run["confusion"]))) \
            == pytest.approx(run["top1"] * result["config"]["val_images"])
        # ... and which photos it gets wrong: as many as the confusion matrix's off-diagonal, each a val photo.
        off_diagonal = sum(map(sum, run["confusion"])) - sum(run["confusion"][i][i] for i in range(3))
        assert len(run["missed"]) == len(set(run["missed"])) == off_diagonal > 0
        assert all((data / path).is_file() and path.startswith("val/") for path in run["missed"])
    assert result["recipes"]["gemsight"]["runs"][0]["recipe"]["recipe"] == "auto"   # the trainer's default
    targets = result["int8"]["summary"]
    assert {"onnxruntime", "tensorrt", "fpga"} <= set(targets)
    assert all(0.0 <= t["agreement"]["mean"] <= 100.0 for t in targets.values())
    assert result["int8"]["runs"][0]["auto"] is False   # --int8-plain (--auto's search is calibration's tests')
    assert "margin_top1_points" in result
    [both] = result["missed_by_both"]
    missed = {name: set(rec["runs"][0]["missed"]) for name, rec in result["recipes"].items()}
    assert both == {"seed": 2, "gemsight": len(missed["gemsight"]), "reference": len(missed["reference"]),
                    "both": len(missed["gemsight"] & missed["reference"])}
    table = capsys.readouterr().out
    assert "gemsight" in table and "reference" in table and "INT8 target" in table
    recall_rows = table.split("recall % (best epoch)", 1)[1].splitlines()
    assert recall_rows[0].split() == result["config"]["classes"]
    assert recall_rows[1].startswith("gemsight") and recall_rows[2].startswith("reference")
    assert f"seed 2: {both['both']} validation photos missed by both recipes" in table


def test_int8_is_calibrated_with_auto_unless_plain_is_asked_for():
    """The bench measures INT8 as the README tells a store to calibrate a real-photo model: ``--auto``."""
    from bench.real_photos import get_args_parser

    parser = get_args_parser()
    assert parser.parse_args([]).int8_auto is True
    assert parser.parse_args(["--int8-auto"]).int8_auto is True
    assert parser.parse_args(["--int8-plain"]).int8_auto is False
    with pytest.raises(SystemExit):
        parser.parse_args(["--int8-auto", "--int8-plain"])


def test_a_failed_calibration_is_reported_with_its_status_not_lost(tmp_path):
    """The calibration runs in a child process: its failure (a native crash included) names the seed,
    the exit status and the child's last lines, instead of ending the benchmark without a word."""
    import argparse

    from bench.real_photos import calibrate

    (tmp_path / "run").mkdir()
    args = argparse.Namespace(data=tmp_path / "photos", int8_auto=False)
    with pytest.raises(RuntimeError, match=r"seed 3: gemsight-calibrate exited with status 2:(.|\n)*model\.onnx"):
        calibrate(tmp_path / "run", args, tmp_path / "work", 3)
