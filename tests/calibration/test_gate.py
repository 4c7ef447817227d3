import numpy as np
import pytest

from calibration.gate import AccuracyGateError, Result, apply_gate, gate_message, macro_f1_percent, top1_percent
from calibration.pipeline import parse_targets
from edge.errors import ConfigError


def test_metrics():
    labels = np.array([0, 0, 1, 1])
    pred = np.array([0, 1, 1, 1])
    assert top1_percent(pred, labels) == 75.0
    # class 0: P=1, R=.5 → F1 2/3; class 1: P=2/3, R=1 → F1 .8
    assert macro_f1_percent(pred, labels) == pytest.approx((2 / 3 + 0.8) / 2 * 100)


def _result(name, drop, gated=True):
    return Result(name=name, target=name, artifact="x", backend="onnxruntime", gated=gated, note="", size_bytes=1,
                  top1=90.0 - drop, macro_f1=0.0, agreement=99.0, max_logit_error=0.1, mean_logit_error=0.01, drop=drop)


def test_gate_names_target_and_drop():
    results = [_result("fp32", 0.0, gated=False), _result("onnxruntime", 0.4), _result("fpga", 1.25)]
    failures = apply_gate(results, 0.5)
    assert [r.name for r in failures] == ["fpga"] and results[1].passed and not results[2].passed
    message = gate_message(failures, 0.5)
    assert "target 'fpga' top-1 dropped 1.25 points" in message and "--max-drop 0.5" in message
    assert AccuracyGateError.exit_code == 3


def test_parse_targets():
    assert parse_targets("fpga, onnxruntime") == ("onnxruntime", "fpga")
    with pytest.raises(ConfigError, match="'cuda'"):
        parse_targets("onnxruntime,cuda")
    with pytest.raises(ConfigError, match="empty"):
        parse_targets(" , ")
