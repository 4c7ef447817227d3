import json

import pytest

from edge.errors import RuntimeUnavailable
from edge.runtimes import engine_cache as ec


def model_dir(tmp_path, cache_text="TRT-8601-EntropyCalibration2\ninput: 3f000000\n"):
    d = tmp_path / "model"
    d.mkdir(exist_ok=True)
    (d / "model.onnx").write_bytes(b"onnx-fp32")
    (d / "model.int8.trt.onnx").write_bytes(b"onnx-qdq")
    (d / "calib.cache").write_text(cache_text)
    (d / "manifest.json").write_text("{}")
    return d


def key(digest="a" * 64, trt="10.3.0.30", gpu="Orin (nvgpu)", cc="8.7", precision="int8", max_batch=8,
        cuda="12.6", system="L4T R36.4.3", dla=None, workspace=1024, fp16_fallback=True):
    return ec.EngineKey(digest, trt, cuda, system, gpu, cc, dla, precision, max_batch, workspace, fp16_fallback)


def test_model_digest_covers_every_engine_source(tmp_path):
    d = model_dir(tmp_path)
    first = ec.model_digest(d)
    assert first == ec.model_digest(d)
    (d / "manifest.json").write_text('{"metrics": 1}')  # not an engine source
    assert ec.model_digest(d) == first
    (d / "calib.cache").write_text("TRT-8601-EntropyCalibration2\ninput: 3f800000\n")  # recalibrated
    assert ec.model_digest(d) != first


def test_model_digest_needs_sources(tmp_path):
    with pytest.raises(RuntimeUnavailable, match="no TensorRT engine source"):
        ec.model_digest(tmp_path)


def test_key_changes_with_digest_and_tensorrt_version():
    base = key()
    assert key().dirname == base.dirname
    assert key(digest="b" * 64).dirname != base.dirname
    assert key(trt="10.3.0").dirname != base.dirname
    assert key(cc="7.2").dirname != base.dirname
    assert key(precision="fp16").dirname != base.dirname
    assert key(max_batch=4).dirname != base.dirname
    # What a JetPack/driver update changes, the DLA core and the builder options: each a new entry.
    for changed in (key(trt="10.3.0.26"), key(cuda="12.2"), key(system="L4T R36.3.0"), key(dla=0),
                    key(workspace=256), key(fp16_fallback=False)):
        assert changed.dirname != base.dirname
    assert "/" not in key(gpu="NVIDIA H100 80GB HBM3 / MIG 1g").dirname


def test_bad_key():
    with pytest.raises(ValueError, match="precision"):
        key(precision="int4")
    with pytest.raises(ValueError, match="max_batch"):
        key(max_batch=0)


def test_store_and_lookup(tmp_path):
    k = key()
    assert ec.lookup(tmp_path, k) is None
    stored = ec.store(tmp_path, k, b"engine-bytes", "fp16", {"mode": "float"})
    assert stored.path == tmp_path / k.dirname / ec.ENGINE_FILE
    hit = ec.lookup(tmp_path, k)
    assert hit.path == stored.path and hit.built_precision == "fp16" and hit.max_batch == 8
    assert hit.sidecar["key"]["precision"] == "int8" and hit.sidecar["mode"] == "float"
    assert ec.lookup(tmp_path, key(trt="10.3.0.26")) is None
    assert [e.path for e in ec.list_entries(tmp_path)] == [stored.path]


def test_corrupt_or_foreign_entries_are_ignored(tmp_path, caplog):
    k = key()
    stored = ec.store(tmp_path, k, b"engine-bytes", "int8")
    stored.path.write_bytes(b"engine-byteX")
    assert ec.lookup(tmp_path, k) is None and "does not match" in caplog.text
    ec.store(tmp_path, k, b"engine-bytes", "int8")
    sidecar = stored.path.with_suffix(".json")
    data = json.loads(sidecar.read_text())
    data["key"]["trt_version"] = "9.9.9"
    sidecar.write_text(json.dumps(data))
    assert ec.lookup(tmp_path, k) is None
    sidecar.unlink()
    assert ec.lookup(tmp_path, k) is None  # incomplete entry


def test_store_refuses_unknown_precision(tmp_path):
    with pytest.raises(ValueError):
        ec.store(tmp_path, key(), b"x", "int4")


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv(ec.ENV_CACHE_DIR, raising=False)
    monkeypatch.setenv("CACHE_DIRECTORY", f"{tmp_path}/svc:/other")
    assert ec.default_cache_dir() == tmp_path / "svc" / "engines"
    monkeypatch.setenv(ec.ENV_CACHE_DIR, str(tmp_path / "mine"))
    assert ec.default_cache_dir() == tmp_path / "mine"


def test_build_options_from_config_options():
    opts = ec.BuildOptions.from_options({"workspace_mb": 256, "fp16_fallback": False, "dla_core": 1,
                                         "engine_cache": "/x", "max_batch": 4, "device": 0})
    assert opts == ec.BuildOptions(256, False, 1)
    assert ec.BuildOptions.from_options({"dla_core": None}) == ec.BuildOptions()
    with pytest.raises(ValueError, match="workspace_mb must be an integer of at least 16"):
        ec.BuildOptions(workspace_mb=8)
    with pytest.raises(ValueError, match="dla_core must be a DLA core number"):
        ec.BuildOptions(dla_core=-1)


def test_config_defaults_are_the_builders():
    from edge.config.runtime import TensorRtOptions

    fields = TensorRtOptions.model_fields
    assert ec.BuildOptions() == ec.BuildOptions(fields["workspace_mb"].default, fields["fp16_fallback"].default,
                                                fields["dla_core"].default)


def test_system_release(tmp_path):
    from edge.platform import cuda_version_text, system_release

    assert system_release(tmp_path) == "unknown"
    (tmp_path / "proc/driver/nvidia").mkdir(parents=True)
    (tmp_path / "proc/driver/nvidia/version").write_text(
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024\n")
    assert system_release(tmp_path) == "driver 550.54.15"
    (tmp_path / "sys/module/nvidia").mkdir(parents=True)
    (tmp_path / "sys/module/nvidia/version").write_text("550.54.15\n")
    (tmp_path / "proc/driver/nvidia/version").unlink()  # what ProcSubset=pid leaves a service
    assert system_release(tmp_path) == "driver 550.54.15"
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/nv_tegra_release").write_text(
        "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8\n")
    assert system_release(tmp_path) == "L4T R36.4.3"
    assert cuda_version_text(12060) == "12.6" and cuda_version_text(13000) == "13.0"


def test_unreadable_sidecar_is_ignored(tmp_path, caplog):
    k = key()
    stored = ec.store(tmp_path, k, b"engine-bytes", "int8")
    stored.path.with_suffix(".json").write_bytes(b"\xff\xfe not utf-8")
    assert ec.lookup(tmp_path, k) is None and "unreadable" in caplog.text


def test_probe_without_tensorrt(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(RuntimeUnavailable, match="JetPack"):
        ec.key_for(model_dir(tmp_path), "int8", 8)
