"""TensorRT builder: the plain decisions here; the real build in `gpu` tests that skip without one."""
import json
import sys

import numpy as np
import pytest

from calibration import tensorrt as trt_build
from edge.errors import CalibrationError, RuntimeUnavailable


@pytest.mark.parametrize("cc, expected", [("5.3", (False, True)), ("6.1", (True, False)), ("6.2", (False, True)),
                                          ("7.2", (True, True)), ("8.7", (True, True)), ("9.0", (True, True))])
def test_fast_precisions_from_compute_capability(cc, expected):
    assert trt_build.fast_precisions_from_cc(cc) == expected


def test_nano_gets_fp16_and_says_so():
    built, warning = trt_build.choose_precision("int8", fast_int8=False, fast_fp16=True)
    assert built == "fp16" and "NOT INT8" in warning


@pytest.mark.parametrize("requested, int8, fp16, built", [("int8", True, True, "int8"), ("int8", False, False, "fp32"),
                                                          ("fp16", True, False, "fp32"), ("fp32", True, True, "fp32"),
                                                          ("fp16", False, True, "fp16")])
def test_choose_precision(requested, int8, fp16, built):
    assert trt_build.choose_precision(requested, int8, fp16)[0] == built


def test_unknown_precision():
    with pytest.raises(CalibrationError, match="unknown precision 'int4'"):
        trt_build.choose_precision("int4", True, True)


def _model_dir(tmp_path, *files):
    for name in files:
        (tmp_path / name).write_bytes(b"x")
    return tmp_path


def _api(generation):
    from calibration.trt_api import TrtApi
    from tests.fake_tensorrt import make_tensorrt

    return TrtApi.of(make_tensorrt(generation)[0])


def test_plan_modes_by_capability(tmp_path):
    d = _model_dir(tmp_path, "model.onnx", "model.int8.trt.onnx", "calib.cache")
    modes = {g: trt_build.plan_build(d, "int8", _api(g), True, True) for g in ("8.6", "10", "11")}
    assert {g: (p.mode, p.onnx.name) for g, p in modes.items()} == {
        "8.6": ("explicit", "model.int8.trt.onnx"), "10": ("strongly-typed", "model.int8.trt.onnx"),
        "11": ("strongly-typed", "model.int8.trt.onnx")}


def test_plan_implicit_without_qdq_model(tmp_path):
    d = _model_dir(tmp_path, "model.onnx", "calib.cache")
    plan = trt_build.plan_build(d, "int8", _api("8.6"), True, True)
    assert (plan.mode, plan.onnx.name, plan.calib_cache.name) == ("implicit", "model.onnx", "calib.cache")


def test_plan_without_fast_int8_builds_fp16_from_fp32_model(tmp_path):
    d = _model_dir(tmp_path, "model.onnx", "model.int8.trt.onnx", "calib.cache")
    plan = trt_build.plan_build(d, "int8", _api("8.6"), False, True)
    assert (plan.precision, plan.mode, plan.onnx.name) == ("fp16", "float", "model.onnx") and plan.warning


def test_plan_missing_artifacts(tmp_path):
    with pytest.raises(CalibrationError, match="tensorrt target"):
        trt_build.plan_build(_model_dir(tmp_path, "model.onnx"), "int8", _api("10"), True, True)
    with pytest.raises(CalibrationError, match="no model.onnx"):
        trt_build.plan_build(tmp_path / "nothing-here", "fp16", _api("10"), True, True)


def test_bad_compute_capability():
    with pytest.raises(CalibrationError, match="'sm87' is not a CUDA compute capability"):
        trt_build.fast_precisions_from_cc("sm87")


def test_count_int8_layers():
    info = {"Layers": [
        {"Name": "conv1", "Inputs": [{"Format/Datatype": "Int8 NC/32HW32"}], "Outputs": [{"Format/Datatype": "Int8 NC/32HW32"}]},
        {"Name": "fc", "Inputs": [{"Format/Datatype": "Half"}], "Outputs": [{"Format/Datatype": "Float"}]},
        {"Name": "conv2", "Inputs": [{"Format/Datatype": "Row major linear INT8 format"}], "Outputs": []}]}
    count = trt_build.count_int8_layers(json.dumps(info))
    assert (count.int8, count.layers, count.conclusive) == (2, 3, True)
    assert trt_build.count_int8_layers(json.dumps({"Layers": ["conv1", "fc"]})).conclusive is False


def test_ensure_engine_without_tensorrt(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(RuntimeUnavailable, match="JetPack"):
        trt_build.ensure_engine(tmp_path, tmp_path / "cache", max_batch=4)


# -- on a GPU ------------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["int8", "fp16", "fp32"])
def test_build_cache_and_run_engine(tensorrt_gpu, calibrated, tmp_path, precision):
    from edge.runtimes import engine_cache
    from edge.runtimes.registry import create_runtime

    cache = tmp_path / "engines"
    path = trt_build.ensure_engine(calibrated, cache, max_batch=4, precision=precision)
    sidecar = engine_cache.read_sidecar(path)
    assert sidecar["key"]["precision"] == precision and sidecar["built_precision"] in engine_cache.PRECISIONS
    if precision == "int8" and sidecar["fast_int8"]:
        # A GPU with fast INT8 gets a real INT8 engine, confirmed by the inspector through a context.
        assert sidecar["built_precision"] == "int8" and sidecar["int8_confirmed"] and sidecar["int8_layers"] > 0
        assert sidecar["mode"] in ("strongly-typed", "explicit", "implicit")
    elif precision == "int8":
        assert sidecar["built_precision"] in ("fp16", "fp32")
    mtime = path.stat().st_mtime_ns
    assert trt_build.ensure_engine(calibrated, cache, max_batch=4, precision=precision) == path
    assert path.stat().st_mtime_ns == mtime  # cache hit (deserialized once), not a rebuild
    assert trt_build.ensure_engine(calibrated, cache, max_batch=4, precision=precision, rebuild=True) == path
    assert path.stat().st_mtime_ns != mtime
    x = np.random.default_rng(0).standard_normal((6, 3, 64, 64)).astype(np.float32)
    with create_runtime("onnxruntime", calibrated, precision="fp32") as ort_rt:
        ref = ort_rt(x)
    with create_runtime("tensorrt", calibrated, precision=precision, engine_cache=cache, max_batch=4) as rt:
        assert rt.precision == sidecar["built_precision"] and rt.max_batch == 4
        out = rt(x)  # 6 > max batch 4: split in two calls
    np.testing.assert_allclose(out, ref, atol=0.05 if precision == "fp32" else 0.5)


@pytest.mark.gpu
def test_implicit_int8_from_cache(tensorrt_gpu, calibrated, tmp_path):
    import shutil

    import tensorrt

    from calibration.trt_api import TrtApi
    from edge.runtimes import engine_cache

    d = tmp_path / "model"
    shutil.copytree(calibrated, d)
    (d / "model.int8.trt.onnx").unlink()  # leaves model.onnx + calib.cache: the implicit path
    if not TrtApi.of(tensorrt).calibrator:  # TensorRT 11: a clear refusal instead
        with pytest.raises(CalibrationError, match="no calibration-cache path"):
            trt_build.ensure_engine(d, tmp_path / "engines", max_batch=2, precision="int8")
        return
    path = trt_build.ensure_engine(d, tmp_path / "engines", max_batch=2, precision="int8")
    side = engine_cache.read_sidecar(path)
    # implicit INT8 from calib.cache, or FP16/FP32 from model.onnx on a GPU without fast INT8
    assert side["mode"] == ("implicit" if side["fast_int8"] else "float")
    assert side["source"] == "model.onnx"
    if side["fast_int8"]:
        assert side["built_precision"] == "int8" and side["int8_confirmed"]
