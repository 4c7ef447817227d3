"""The command line: ``python -m trainer evaluate``, option files, and errors as one-line exits."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edge.errors import ConfigError
from trainer.args import parse_args, resolve_args
from trainer.train import train


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainer", *argv], capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_evaluate_command_writes_the_report(tiny_run, tiny_data, tmp_path):
    proc = _run("evaluate", str(tiny_run / "model.onnx"), "--data", str(tiny_data), "--out", str(tmp_path / "r.json"),
                "--threads", "1", "--misses", "2", "--misses-png", str(tmp_path / "misses.png"))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    report = json.loads((tmp_path / "r.json").read_text())
    assert summary["accuracy"] == report["accuracy"] and report["images"] == 9 and summary["backend"] == "onnxruntime"
    assert summary["missed"] == report["missed"] and len(report["misses"]) == min(2, report["missed"])
    assert (tmp_path / "misses.png").is_file() == (report["missed"] > 0)
    refused = _run("evaluate", str(tiny_run / "model.onnx"), "--data", str(tiny_data), "--misses", "-3")
    assert refused.returncode == 2 and "--misses must not be negative, got -3" in refused.stderr


def test_errors_exit_with_one_line_naming_the_problem(tmp_path):
    proc = _run("--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run"), "--weights", "none")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("gemsight-train: error:")
    assert "nowhere" in proc.stderr and "Traceback" not in proc.stderr


def test_config_file_sets_defaults_and_refuses_unknown_keys(tmp_path):
    good = tmp_path / "args.yaml"
    good.write_text("arch: resnet18\nepochs: 3\nimg_size: 48\ndata: /d\n")
    args = resolve_args(parse_args(["--config", str(good), "--epochs", "5", "--out", "o"]))
    assert (args.arch, args.epochs, args.img_size, args.data) == ("resnet18", 5, 48, "/d")
    bad = tmp_path / "bad.yaml"
    bad.write_text("arch: resnet18\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="learning_rate"):
        parse_args(["--config", str(bad)])


def test_train_refuses_unknown_keywords_and_missing_data(tmp_path):
    with pytest.raises(ConfigError, match="learning_rate"):
        train(data="x", out=str(tmp_path), learning_rate=0.1)
    with pytest.raises(ConfigError, match="--data"):
        train(out=str(tmp_path))
    with pytest.raises(ConfigError, match="--epochs"):
        train(data="x", out=str(tmp_path), epochs=0)


def test_module_dispatches_synth_and_train_help():
    synth = _run("synth", "--help")
    assert synth.returncode == 0 and "synth" in synth.stdout.lower()
    trainer_help = _run("--help")
    assert trainer_help.returncode == 0 and "--img-size" in trainer_help.stdout
    assert "--debug-digest" not in trainer_help.stdout  # the test aid stays hidden
