import numpy as np
import pytest

from edge.errors import ConfigError, InferenceError
from edge.runtimes.registry import available_runtimes, create_runtime


def test_onnxruntime_and_openvino_agree(untrained_onnx):
    batch = np.random.default_rng(0).standard_normal((3, 3, 64, 64), dtype=np.float32)
    outs = {}
    for name, reason in available_runtimes().items():
        if reason is None:
            with create_runtime(name, untrained_onnx) as rt:
                outs[name] = rt(batch)
    assert "onnxruntime" in outs
    for name, out in outs.items():
        assert out.shape == (3, 8)
        np.testing.assert_allclose(out, outs["onnxruntime"], atol=1e-3, err_msg=name)


def test_bad_input_named(untrained_onnx):
    with create_runtime("onnxruntime", untrained_onnx) as rt:
        with pytest.raises(InferenceError, match="input"):
            rt(np.zeros((1, 3, 32, 32), np.float32))


def test_unknown_runtime():
    with pytest.raises(ConfigError, match="unknown runtime 'tensorflow'"):
        create_runtime("tensorflow", "x.onnx")
