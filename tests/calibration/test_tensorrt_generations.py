"""The TensorRT builder against stand-ins shaped like TensorRT 8.6, 10.x and 11.x (tests/fake_tensorrt.py).

Real TensorRT cannot be installed here; these check which builder calls are made on each API
generation, that precision is read through an execution context, that stale or damaged cache
entries are rebuilt, and that every failure is a CalibrationError. The real build is in the `gpu`
tests of test_tensorrt.py.
"""
from __future__ import annotations

import json
import logging
import sys

import pytest

from calibration import tensorrt as trt_build
from calibration.trt_api import TrtApi
from calibration.trt_inspect import count_int8_layers
from edge import platform as engine_platform
from edge.contracts import DEFAULT_CLASSES
from edge.errors import CalibrationError
from edge.manifest import InputSpec, Manifest
from edge.runtimes import engine_cache
from edge.runtimes.engine_cache import BuildOptions
from tests.fake_tensorrt import NA, make_pycuda, make_tensorrt


@pytest.fixture
def model_dir(tmp_path):
    d = tmp_path / "model"
    d.mkdir()
    (d / "model.onnx").write_bytes(b"fp32")
    (d / "model.int8.trt.onnx").write_bytes(b"qdq")
    (d / "calib.cache").write_text("TRT-8601-EntropyCalibration2\ninput: 3c010204\n")
    Manifest(name="m", version="1.0.0", arch="resnet18", classes=DEFAULT_CLASSES,
             input=InputSpec(size=(16, 16))).save(d / "manifest.json")
    return d


@pytest.fixture
def device(monkeypatch):
    """Install a TensorRT generation (and a pycuda with one Orin GPU); returns the call log."""
    monkeypatch.setattr(engine_platform, "system_release", lambda root="/": "L4T R36.4.3")

    def install(generation, cc=(8, 7), **kw):
        trt, calls = make_tensorrt(generation, **kw)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        for name, mod in make_pycuda(cc).items():
            monkeypatch.setitem(sys.modules, name, mod)
        return calls
    return install


@pytest.mark.parametrize("generation, flags, set_flags, calibrator_api, inspector", [
    ("8.6", 1 << 0, ["FP16", "INT8"], True, "context"),        # EXPLICIT_BATCH; weakly typed Q/DQ
    ("10", 1 << 1, [], True, "execution_context"),              # STRONGLY_TYPED; no precision flags
    ("11", 1 << 0, [], False, "execution_context"),             # STRONGLY_TYPED is bit 0 in 11
])
def test_int8_build_per_generation(generation, flags, set_flags, calibrator_api, inspector, device, model_dir,
                                   tmp_path):
    calls = device(generation)
    api = TrtApi.of(sys.modules["tensorrt"])
    assert api.calibrator is calibrator_api and api.int8_flag is (generation != "11")
    path = trt_build.ensure_engine(model_dir, tmp_path / "engines", max_batch=6, precision="int8")
    side = engine_cache.read_sidecar(path)
    assert calls.of("create_network") == [("create_network", flags)]
    assert calls.of("parse_from_file") == [("parse_from_file", "model.int8.trt.onnx")]
    assert sorted(c[1] for c in calls.of("set_flag")) == set_flags
    assert calls.of("set_memory_pool_limit") == [("set_memory_pool_limit", "WORKSPACE", 1024 << 20)]
    assert calls.of("add_optimization_profile")[0][1] == ("input", (1, 3, 16, 16), (6, 3, 16, 16), (6, 3, 16, 16))
    # The inspector saw an execution context with the profile's largest shape: INT8 is read as INT8.
    assert ("set_input_shape", "input", (6, 3, 16, 16)) in calls.log
    assert calls.of("get_engine_information") == [("get_engine_information", True)]
    assert side["built_precision"] == "int8" and side["int8_layers"] == 2 and side["int8_confirmed"]
    assert side["mode"] == ("explicit" if generation == "8.6" else "strongly-typed")
    assert side["key"]["trt_version"] == sys.modules["tensorrt"].__version__
    assert side["key"]["system"] == "L4T R36.4.3" and side["key"]["cuda_driver"] == "12.6"


def test_dynamic_shape_dump_without_context_is_not_read_as_fp16():
    na = {"Layers": [{"Name": "conv", "Inputs": [{"Format/Datatype": NA}], "Outputs": [{"Format/Datatype": NA}]}]}
    count = count_int8_layers(json.dumps(na))
    assert (count.int8, count.layers, count.conclusive) == (0, 1, False)  # unknown, never "fp16"
    # INT8 shows in weights or tactic names even where formats are N/A; 11.x structured fields count too.
    weights = {"Layers": [{"Name": "c", "Inputs": [{"Format/Datatype": NA}], "Weights": {"Type": "Int8", "Count": 9}}]}
    tactic = {"Layers": [{"Name": "c", "TacticName": "sm87_xmma_fprop_implicit_gemm_interleaved_i8i8_i8i32_f32"}]}
    v11 = {"Layers": [{"Name": "c", "Inputs": [{"Name": "x", "DataType": "Int8", "Format": "kCHW32"}]}],
           "I/O Tensors": [{"Name": "input", "IOMode": "Input", "DataType": "Float"}]}
    assert [count_int8_layers(json.dumps(d)).int8 for d in (weights, tactic, v11)] == [1, 1, 1]
    assert count_int8_layers("not json").layers == 0


def test_implicit_path_only_where_the_api_has_a_calibrator(device, model_dir, tmp_path):
    (model_dir / "model.int8.trt.onnx").unlink()  # leaves model.onnx + calib.cache
    calls = device("10")
    path = trt_build.ensure_engine(model_dir, tmp_path / "e10", max_batch=2, precision="int8")
    side = engine_cache.read_sidecar(path)
    assert side["mode"] == "implicit" and side["built_precision"] == "int8"
    assert calls.of("create_network") == [("create_network", 0)] and calls.of("set_calibration_profile")
    device("11")
    with pytest.raises(CalibrationError, match=r"TensorRT 11\.4\.1\.2 needs model\.int8\.trt\.onnx.*no calibration"):
        trt_build.ensure_engine(model_dir, tmp_path / "e11", max_batch=2, precision="int8")


def test_precision_fallbacks_by_capability(device, model_dir, tmp_path):
    calls = device("11")
    path = trt_build.ensure_engine(model_dir, tmp_path / "a", max_batch=2, precision="fp16")
    assert engine_cache.read_sidecar(path)["built_precision"] == "fp32"  # 11.x has no FP16 flag: said, never claimed
    assert calls.of("create_network") == [("create_network", 1 << 0)] and not calls.of("set_flag")
    calls = device("10", cc=(5, 3))  # a Nano-class GPU: no fast INT8
    path = trt_build.ensure_engine(model_dir, tmp_path / "b", max_batch=2, precision="int8")
    side = engine_cache.read_sidecar(path)
    assert (side["built_precision"], side["mode"], side["key"]["precision"]) == ("fp16", "float", "int8")
    assert [c[1] for c in calls.of("set_flag")] == ["FP16"]
    device("10", cc=(5, 3))
    path = trt_build.ensure_engine(model_dir, tmp_path / "c", max_batch=2, precision="int8",
                                   options=BuildOptions(fp16_fallback=False))
    assert engine_cache.read_sidecar(path)["built_precision"] == "fp32"


def test_options_reach_the_builder(device, model_dir, tmp_path):
    calls = device("10")
    opts = BuildOptions(workspace_mb=256, fp16_fallback=False, dla_core=1)
    path = trt_build.ensure_engine(model_dir, tmp_path / "e", max_batch=3, precision="int8", options=opts)
    assert calls.of("set_memory_pool_limit") == [("set_memory_pool_limit", "WORKSPACE", 256 << 20)]
    assert ("set_flag", "GPU_FALLBACK") in calls.log
    assert calls.of("build_serialized_network")[0][1]["dla"] == 1
    key = engine_cache.read_sidecar(path)["key"]
    assert (key["dla_core"], key["workspace_mb"], key["fp16_fallback"]) == (1, 256, False)
    assert "-dla1-int8-b3-" in path.parent.name


def test_cache_hit_is_deserialized_once_and_kept(device, model_dir, tmp_path):
    device("10")
    first = trt_build.ensure_engine(model_dir, tmp_path / "e", max_batch=2)
    calls = device("10")
    assert trt_build.ensure_engine(model_dir, tmp_path / "e", max_batch=2) == first
    assert calls.names() == ["deserialize_cuda_engine"]  # verified, not rebuilt


def test_stale_engine_is_rebuilt_and_logged(device, model_dir, tmp_path, caplog):
    device("10")
    cache = tmp_path / "e"
    path = trt_build.ensure_engine(model_dir, cache, max_batch=2)
    key = engine_cache.EngineKey(**engine_cache.read_sidecar(path)["key"])
    # Same key, but an engine this TensorRT refuses (an update the key did not see).
    engine_cache.store(cache, key, b"fake-engine:10.2.0.0:{\"int8\": true}", "int8")
    calls = device("10")
    with caplog.at_level(logging.WARNING):
        assert trt_build.ensure_engine(model_dir, cache, max_batch=2) == path
    assert "STALE ENGINE" in caplog.text and calls.of("build_serialized_network")
    assert engine_cache.lookup(cache, key).sidecar["int8_confirmed"]
    # Damaged file (digest no longer matches): rebuilt too.
    path.write_bytes(b"garbage")
    calls = device("10")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        trt_build.ensure_engine(model_dir, cache, max_batch=2)
    assert "DAMAGED ENGINE CACHE ENTRY" in caplog.text and calls.of("build_serialized_network")


def test_jetpack_update_misses_and_says_what_changed(device, model_dir, tmp_path, caplog):
    device("10")
    old = trt_build.ensure_engine(model_dir, tmp_path / "e", max_batch=2)
    device("11")
    with caplog.at_level(logging.WARNING):
        new = trt_build.ensure_engine(model_dir, tmp_path / "e", max_batch=2)
    assert new != old and "was built for TensorRT 10.3.0.30" in caplog.text and "now has TensorRT 11.4.1.2" in caplog.text


def test_rebuild_builds_even_on_a_good_hit(device, model_dir, tmp_path):
    device("8.6")
    path = trt_build.ensure_engine(model_dir, tmp_path / "e", max_batch=2)
    calls = device("8.6")
    assert trt_build.ensure_engine(model_dir, tmp_path / "e", max_batch=2, rebuild=True) == path
    assert calls.of("build_serialized_network")


@pytest.mark.parametrize("generation", ["8.6", "10", "11"])
def test_tensorrt_failures_are_calibration_errors(generation, device, model_dir, tmp_path):
    device(generation, fail_build=True)
    with pytest.raises(CalibrationError, match=r"TensorRT failed while building the engine from .*RuntimeError: "
                                               r"Error Code 2"):
        trt_build.ensure_engine(model_dir, tmp_path / "e", max_batch=2)
    (model_dir / "model.int8.trt.onnx").write_bytes(b"bad")
    device(generation)
    with pytest.raises(CalibrationError, match="cannot parse .*unsupported operator"):
        trt_build.ensure_engine(model_dir, tmp_path / "e", max_batch=2)


def test_dla_on_a_tensorrt_without_dla_is_a_clear_error(device, model_dir, tmp_path, monkeypatch):
    device("11")
    monkeypatch.delattr(sys.modules["tensorrt"], "DeviceType")
    with pytest.raises(CalibrationError, match="dla_core 0 is set but TensorRT 11.4.1.2 here has no DLA"):
        trt_build.ensure_engine(model_dir, tmp_path / "e", max_batch=2, options=BuildOptions(dla_core=0))


def test_fake_generations_lack_what_nvidia_removed():
    # The stand-ins themselves: 11.x really has no weak typing or calibrator, as the migration guide says.
    trt11, _ = make_tensorrt("11")
    assert not hasattr(trt11.BuilderFlag, "INT8") and not hasattr(trt11, "IInt8EntropyCalibrator2")
    cfg = trt11.Builder(None).create_builder_config()
    with pytest.raises(AttributeError):
        cfg.int8_calibrator = object()
    trt86, _ = make_tensorrt("8.6")
    assert not hasattr(trt86.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")


def test_unwritable_engine_cache_is_a_calibration_error(device, model_dir, tmp_path):
    device("10")
    not_a_dir = tmp_path / "engines"
    not_a_dir.write_text("a file where the cache should be")
    with pytest.raises(CalibrationError, match=f"cannot create the engine cache {not_a_dir}"):
        trt_build.ensure_engine(model_dir, not_a_dir, max_batch=2)
