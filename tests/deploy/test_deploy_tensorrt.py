"""Flash and build-engine with TensorRT: the smoke test opens the engine flash just built.

TensorRT cannot run here; tests/fake_tensorrt.py stands in for tensorrt and pycuda (shaped like
TensorRT 10.x) so the real calibration.tensorrt builder, engine cache and edge TensorRT runtime run
end to end on a device root.
"""
from __future__ import annotations

import sys

import pytest

from deploy.cli import main
from deploy.flash import FlashOptions, flash
from deploy.install import install
from deploy.layout import DeviceLayout
from edge import platform as engine_platform
from edge.runtimes.engine_cache import ENV_CACHE_DIR, read_sidecar
from tests.fake_tensorrt import make_pycuda, make_tensorrt


@pytest.fixture
def trt_device(tmp_path, keys, monkeypatch, request):
    """An installed device root (edge.yaml: one camera, four slots) with a TensorRT stand-in (10.x
    unless the test says), flashed under sudo-like conditions: no $GEMSIGHT_ENGINE_CACHE, a HOME
    without engines."""
    trt, calls = make_tensorrt(getattr(request, "param", "10"))
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    for name, mod in make_pycuda().items():
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setattr(engine_platform, "system_release", lambda root="/": "L4T R36.4.3")
    monkeypatch.delenv(ENV_CACHE_DIR, raising=False)
    monkeypatch.delenv("CACHE_DIRECTORY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    root = tmp_path / "root"
    install(root, device="case-07", pubkeys=[keys.pub], bin_dir=bin_dir, systemd_version=252)
    return root, calls


@pytest.mark.parametrize("trt_device", ["8.6", "10", "11"], indirect=True)
def test_smoke_test_opens_the_engine_flash_built(trt_device, bundles):
    root, calls = trt_device
    result = flash(bundles.v100, root, FlashOptions(restart=False))
    engines = DeviceLayout(root).engines_dir
    assert result.engine.startswith(str(engines)) and "-b4-" in result.engine  # four slots in edge.yaml
    assert result.smoke["backend"] == "tensorrt" and result.smoke["precision"] == "fp32"
    # open_model's warm-up batch, then the smoke batch, on the engine built for this config
    assert [c[1] for c in calls.of("execute_async_v3")] == [(1, 3, 64, 64), (2, 3, 64, 64)]
    assert read_sidecar(result.engine)["key"]["max_batch"] == 4


def test_overrides_reach_build_and_smoke_test_alike(trt_device, bundles):
    root, calls = trt_device
    result = flash(bundles.v100, root, FlashOptions(restart=False, runtime="tensorrt", precision="fp32", max_batch=8))
    assert "-b8-" in result.engine and result.smoke["backend"] == "tensorrt"
    assert calls.of("execute_async_v3")  # found under b8 in <root>/var/lib/gemsight/engines, not ~/.cache


def test_build_engine_rebuild_and_options_from_edge_yaml(trt_device, bundles, capsys):
    root, calls = trt_device
    cfg = DeviceLayout(root).config_path
    cfg.write_text(cfg.read_text().replace("tensorrt: {fp16_fallback: true", "tensorrt: {fp16_fallback: true, "
                                           "workspace_mb: 256, dla_core: 0"))
    flash(bundles.v100, root, FlashOptions(restart=False, runtime="onnxruntime"))
    built = calls.of("build_serialized_network")
    assert calls.of("set_memory_pool_limit")[-1] == ("set_memory_pool_limit", "WORKSPACE", 256 << 20)
    assert built[-1][1]["dla"] == 0
    assert main(["build-engine", "--root", str(root)]) == 0  # the boot unit: a verified hit
    assert len(calls.of("build_serialized_network")) == len(built)
    assert main(["build-engine", "--root", str(root), "--rebuild"]) == 0
    assert len(calls.of("build_serialized_network")) == len(built) + 1
    assert "-dla0-fp32-b4-" in capsys.readouterr().out
    assert main(["status", "--root", str(root)]) == 0
    assert "built for TensorRT 10.3.0.30, CUDA 12.6, L4T R36.4.3, Orin (nvgpu) (DLA core 0)" in capsys.readouterr().out
