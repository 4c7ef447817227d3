import sys

import pytest

from edge import engine_cache as ec
from edge.engine_platform import Platform
from edge.errors import RuntimeUnavailable
from edge.runtimes import available_runtimes, create_runtime
from edge.runtimes.tensorrt_rt import TensorRtRuntime, locate_engine


def test_unavailable_is_reported_not_raised(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    reason = available_runtimes()["tensorrt"]
    assert reason and "JetPack" in reason
    with pytest.raises(RuntimeUnavailable, match="tensorrt"):
        create_runtime("tensorrt", "model.onnx")


def _key(tmp_path, precision="int8"):
    d = tmp_path / "model"
    d.mkdir(exist_ok=True)
    (d / "model.onnx").write_bytes(b"fp32")
    platform = Platform("10.3.0.30", "12.6", "L4T R36.4.3", "Orin", "8.7")
    return d, ec.make_key(d, platform, precision, 4)


def test_missing_engine_says_what_to_run(tmp_path):
    d, key = _key(tmp_path)
    with pytest.raises(RuntimeUnavailable, match=f"gemsight-deploy build-engine {d}") as err:
        locate_engine(d / "model.onnx", "int8", 4, tmp_path / "engines", key=key)
    assert key.dirname in str(err.value)


def test_engine_found_under_key_reports_built_precision(tmp_path):
    d, key = _key(tmp_path)
    ec.store(tmp_path / "engines", key, b"plan", "fp16")
    hit = locate_engine(d, "int8", 4, tmp_path / "engines", key=key)
    assert hit.built_precision == "fp16"  # a Nano-style fallback is never reported as int8


def test_engine_file_given_directly(tmp_path):
    with pytest.raises(RuntimeUnavailable, match="not found"):
        locate_engine(tmp_path / "x.plan", "int8", 4)
    (tmp_path / "x.engine").write_bytes(b"plan")
    assert locate_engine(tmp_path / "x.engine", "int8", 4).path == tmp_path / "x.engine"


@pytest.fixture
def needs_gpu():
    """Skip (before any model is exported) unless TensorRT, pycuda and a CUDA device are here."""
    reason = TensorRtRuntime.unavailable_reason()
    if reason:
        pytest.skip(f"needs TensorRT + pycuda + an NVIDIA GPU: {reason}")


@pytest.mark.gpu
def test_runtime_from_engine_file(needs_gpu, tmp_path, untrained_onnx):
    import numpy as np

    from calibration.tensorrt import ensure_engine

    # untrained_onnx's folder holds model.onnx + manifest.json: enough for an FP32 engine.
    path = ensure_engine(untrained_onnx.parent, tmp_path / "engines", max_batch=2, precision="fp32")
    x = np.zeros((3, 3, 64, 64), np.float32)
    from edge.manifest import load_manifest_for

    # An engine file carries no manifest: the caller passes the model's.
    with create_runtime("tensorrt", path, manifest=load_manifest_for(untrained_onnx)) as rt:
        assert rt.max_batch == 2 and rt.precision == "fp32"
        assert rt(x).shape == (3, 8)


@pytest.mark.gpu
def test_two_outputs_for_real(needs_gpu, tmp_path):
    """The class scores and the embedding of a real engine, named by the manifest, against ONNX Runtime on
    the same two-output model: a batch under the profile's largest, one equal to it, one split."""
    import numpy as np

    from calibration.tensorrt import ensure_engine
    from tests.edge.fake_trt_infer import write_model

    onnx_path, manifest = write_model(tmp_path / "model")
    path = ensure_engine(onnx_path.parent, tmp_path / "engines", max_batch=4, precision="fp32")
    x = np.random.default_rng(0).normal(size=(6, 3, 16, 16)).astype(np.float32)
    with create_runtime("onnxruntime", onnx_path, manifest=manifest) as ort_rt:
        ref = ort_rt.infer({"input": x})
    with create_runtime("tensorrt", path, manifest=manifest) as rt:
        assert rt.max_batch == 4
        for n in (3, 4, 6):
            got = rt.infer({"input": x[:n]})
            assert list(got) == ["logits", "embedding"]
            np.testing.assert_allclose(got["logits"], ref["logits"][:n], atol=1e-3)
            np.testing.assert_allclose(got["embedding"], ref["embedding"][:n], atol=1e-4)
