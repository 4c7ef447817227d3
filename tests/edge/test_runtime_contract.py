"""The contract every registered runtime keeps: same logits, inputs checked, unavailability reported."""
import numpy as np
import pytest

from edge.errors import InferenceError, RuntimeUnavailable
from edge.runtimes.registry import available_runtimes, create_runtime, registered_runtimes

NAMES = sorted(registered_runtimes())
MARKS = {"openvino": [pytest.mark.openvino], "tensorrt": [pytest.mark.gpu]}
PARAMS = [pytest.param(n, marks=MARKS.get(n, []), id=n) for n in NAMES]


def _runtime(name, model):
    reason = available_runtimes()[name]
    if reason is not None:
        pytest.skip(f"{name} unavailable here: {reason}")
    return create_runtime(name, model, threads=1)


@pytest.fixture(scope="module")
def batch():
    return np.random.default_rng(7).standard_normal((5, 3, 64, 64), dtype=np.float32)


@pytest.fixture(scope="module")
def reference(untrained_onnx, batch):
    with create_runtime("onnxruntime", untrained_onnx, threads=1) as rt:
        return rt(batch)


@pytest.mark.parametrize("name", PARAMS)
def test_same_logits_on_the_same_batch(name, untrained_onnx, batch, reference):
    with _runtime(name, untrained_onnx) as rt:
        out = rt(batch)
        assert out.shape == (5, 8) and out.dtype == np.float32
        # FP32 everywhere (TensorRT may pick FP16 kernels: looser).
        atol = 5e-2 if name == "tensorrt" else 1e-3
        np.testing.assert_allclose(out, reference, atol=atol, rtol=1e-3)
        np.testing.assert_allclose(rt(batch[2:3]), reference[2:3], atol=atol, rtol=1e-3)  # batch size changes
        assert rt.describe()["backend"] == name


@pytest.mark.parametrize("name", PARAMS)
@pytest.mark.parametrize("bad, match", [
    (np.zeros((1, 3, 32, 32), np.float32), r"must be N x 3 x 64 x 64, got \(1, 3, 32, 32\)"),
    (np.zeros((3, 64, 64), np.float32), r"must be N x 3 x 64 x 64"),
    (np.zeros((1, 1, 64, 64), np.float32), r"must be N x 3 x 64 x 64"),
    (np.zeros((0, 3, 64, 64), np.float32), "empty batch"),
    (np.zeros((1, 3, 64, 64), np.float64), "must be float32, got float64"),
    ([[0.0]], "must be N x 3 x 64 x 64, got list"),
], ids=["size", "ndim", "channels", "empty", "dtype", "not-array"])
def test_bad_input_rejected_by_name(name, untrained_onnx, bad, match):
    with _runtime(name, untrained_onnx) as rt:
        with pytest.raises(InferenceError, match=match):
            rt(bad)
        with pytest.raises(InferenceError, match="expected one input 'input'"):
            rt.infer({"pixels": np.zeros((1, 3, 64, 64), np.float32)})


@pytest.mark.parametrize("name", NAMES)
def test_unavailable_runtime_is_reported_not_a_crash(name, untrained_onnx):
    reason = available_runtimes()[name]
    if reason is None:
        pytest.skip(f"{name} is available here")
    assert isinstance(reason, str) and reason
    with pytest.raises(RuntimeUnavailable, match=f"runtime '{name}' is not available here"):
        create_runtime(name, untrained_onnx)
