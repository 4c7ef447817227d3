"""The calibration command end to end on a small model: layout, shared ranges, the gate, bad input."""
import json
import math
import shutil
import sys

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from calibration.cli import main
from calibration.fpga import scale_violations
from calibration.qdq import activation_qparams
from calibration.trt_cache import read_cache
from edge.manifest import load_manifest_for
from edge.runtimes.registry import create_runtime
from tests.helpers import make_images

pytestmark = pytest.mark.slow


def cli(*args):
    return main([str(a) for a in args])


def test_layout_and_manifests(calibrated):
    for rel in ("manifest.json", "model.onnx", "model.int8.onnx", "model.int8.trt.onnx", "calib.cache",
                "openvino/model.xml", "openvino/model.bin", "openvino/model.int8.xml", "openvino/model.int8.bin",
                "model.fpga.onnx", "report.json", "report.md", "calibration.json"):
        assert (calibrated / rel).is_file(), rel
    assert not list(calibrated.parent.glob(".*tmp*")), "staging directory left behind"
    fp32 = load_manifest_for(calibrated)
    assert fp32.precision == "fp32" and "fp32_accuracy" in fp32.metrics and "int8_accuracy" in fp32.metrics
    record = json.loads((calibrated / "calibration.json").read_text())
    for rel in ("model.int8.onnx", "model.int8.trt.onnx", "model.fpga.onnx"):
        m = load_manifest_for(calibrated / rel)
        assert m.precision == "int8"
        assert (m.calibration.method, m.calibration.images, m.calibration.digest) == ("minmax", 40, record["digest"])
    assert record["sample"]["count"] == 40 and len(record["sample"]["images"]) == 40
    assert load_manifest_for(calibrated / "model.onnx").metrics == fp32.metrics


def test_one_set_of_ranges_feeds_every_artifact(calibrated):
    record = json.loads((calibrated / "calibration.json").read_text())
    ranges = {k: max(abs(lo), abs(hi)) for k, (lo, hi) in record["ranges"].items()}
    cache = read_cache(calibrated / "calib.cache").scales
    assert set(cache) == set(ranges)
    for name, amax in ranges.items():
        assert cache[name] == pytest.approx(amax / 127 if amax else 1.0, rel=1e-6)
    # TensorRT's QDQ model carries exactly the cache's scales, zero point 0, int8.
    trt = activation_qparams(calibrated / "model.int8.trt.onnx")
    shared = [t for t in trt if t in cache]
    assert len(shared) >= len(cache) - 1
    for t in shared:
        scale, zp, elem = trt[t]
        assert np.float32(scale) == np.float32(cache[t]) and zp == 0 and elem == onnx.TensorProto.INT8
    # The CPU model's uint8 (scale, zero point) encode the same range, to one quantization step.
    cpu = activation_qparams(calibrated / "model.int8.onnx")
    assert cpu and all(elem == onnx.TensorProto.UINT8 for _, _, elem in cpu.values())
    checked = 0
    for t, (scale, zp, _) in cpu.items():
        if t in ranges:
            assert max(zp * scale, (255 - zp) * scale) == pytest.approx(ranges[t], abs=scale)
            checked += 1
    assert checked >= 10


def test_logits_stay_float_except_on_fpga(calibrated):
    # Rounding the logits to 8 bits would swap close classes; the DPU model keeps an all-integer head.
    def quantizes_logits(rel):
        return any(t.startswith("logits") for t in activation_qparams(calibrated / rel))
    assert not quantizes_logits("model.int8.onnx") and not quantizes_logits("model.int8.trt.onnx")
    assert quantizes_logits("model.fpga.onnx")


def test_fpga_scales_are_exact_powers_of_two(calibrated):
    model = onnx.load(str(calibrated / "model.fpga.onnx"))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    seen = 0
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            for s in inits[node.input[1]].reshape(-1):
                mantissa, _ = math.frexp(float(s))
                assert mantissa == 0.5, f"{node.input[1]} = {s}"
                seen += 1
            if len(node.input) > 2:
                assert not np.any(inits[node.input[2]]), node.input[2]
    assert seen > 40
    assert scale_violations(calibrated / "model.fpga.onnx") == []


@pytest.mark.parametrize("backend, precision", [("onnxruntime", "int8"), ("onnxruntime", "fp32"),
                                                ("openvino", "int8"), ("openvino", "fp32")])
def test_artifacts_run_in_edge_runtimes(calibrated, backend, precision):
    x = np.random.default_rng(0).standard_normal((3, 3, 64, 64)).astype(np.float32)
    with create_runtime("onnxruntime", calibrated, precision="fp32") as ref_rt:
        ref = ref_rt(x)
    with create_runtime(backend, calibrated, precision=precision) as rt:
        assert rt.precision == precision
        out = rt(x)
    assert out.shape == (3, 8)
    np.testing.assert_allclose(out, ref, atol=1e-3 if precision == "fp32" else 0.5)


def test_report(calibrated):
    report = json.loads((calibrated / "report.json").read_text())
    assert report["status"] == "passed" and report["labelled"]
    rows = {r["name"]: r for r in report["results"]}
    assert set(rows) == {"fp32", "onnxruntime", "openvino_fp32", "openvino", "tensorrt", "fpga"}
    assert rows["fp32"]["speedup"]["b1"] == 1.0 and rows["onnxruntime"]["throughput"]["b8"] > 0
    assert rows["tensorrt"]["throughput"]["b1"] is None  # not timed on a CPU
    for r in rows.values():
        assert 0 <= r["agreement"] <= 100 and r["size_bytes"] > 0 and r["max_logit_error"] >= r["mean_logit_error"]
    assert "| onnxruntime |" in (calibrated / "report.md").read_text()


def test_gate_failure_publishes_nothing(untrained_onnx, calib_images, tmp_path, capsys):
    out = tmp_path / "model"
    code = cli(untrained_onnx, "--images", calib_images, "--out", out, "--count", 32, "--method", "minmax",
               "--targets", "onnxruntime", "--max-drop", -1, "--bench-iters", 0, "--no-diagnose")
    err = capsys.readouterr().err
    assert code == 3
    assert "target 'onnxruntime' top-1 dropped" in err and "-1" in err
    assert not out.exists() and not list(tmp_path.glob(".model*"))
    rejected = json.loads((tmp_path / "model.rejected" / "report.json").read_text())
    assert rejected["status"] == "failed" and rejected["failures"] == ["onnxruntime"]


def test_failed_gate_keeps_existing_out_untouched(untrained_onnx, calib_images, tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    code = cli(untrained_onnx, "--images", calib_images, "--out", out, "--count", 32, "--method", "minmax",
               "--targets", "onnxruntime", "--max-drop", -1, "--bench-iters", 0, "--force",
               "--no-diagnose")
    assert code == 3 and (out / "keep.txt").read_text() == "old"
    code = cli(untrained_onnx, "--images", calib_images, "--out", out, "--count", 32, "--method", "minmax",
               "--targets", "onnxruntime,fpga", "--max-drop", 100, "--bench-iters", 0, "--force")
    assert code == 0 and not (out / "keep.txt").exists() and (out / "model.fpga.onnx").is_file()
    assert not (out / "calib.cache").exists()  # tensorrt was not a target


def test_model_without_manifest(untrained_onnx, calib_images, tmp_path, capsys):
    bare = tmp_path / "bare.onnx"
    model = onnx.load(str(untrained_onnx))
    del model.metadata_props[:]
    onnx.save(model, str(bare))
    assert cli(bare, "--images", calib_images, "--out", tmp_path / "o") == 2
    assert "has no manifest" in capsys.readouterr().err


def test_too_few_images(untrained_onnx, tmp_path, capsys):
    few = make_images(tmp_path / "few", per_class=2)
    assert cli(untrained_onnx, "--images", few, "--out", tmp_path / "o", "--targets", "onnxruntime") == 2
    assert "only 16 readable calibration image" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_unknown_target(untrained_onnx, calib_images, tmp_path, capsys):
    assert cli(untrained_onnx, "--images", calib_images, "--out", tmp_path / "o", "--targets", "onnxruntime,tpu") == 2
    assert "'tpu'" in capsys.readouterr().err


def _int8_weights(xml):
    import openvino as ov

    model = ov.Core().read_model(str(xml))
    return [c.get_data() for c in model.get_ops() if c.get_type_name() == "Constant"
            and c.get_element_type() == ov.Type.i8]


def test_openvino_ir_has_7_bit_weights_and_onnx_keeps_8(calibrated, untrained_onnx, calib_images, tmp_path):
    # On a CPU without VNNI, 8-bit weights saturate OpenVINO's int8 kernels; the IR's weights stay within ±64.
    weights = _int8_weights(calibrated / "openvino" / "model.int8.xml")
    assert weights and max(int(np.abs(w.astype(np.int16)).max()) for w in weights) <= 64
    assert json.loads((calibrated / "calibration.json").read_text())["openvino_weight_bits"] == 7
    onnx_w = [numpy_helper.to_array(t) for t in onnx.load(str(calibrated / "model.int8.onnx")).graph.initializer
              if t.data_type == onnx.TensorProto.INT8 and t.dims]
    assert max(int(np.abs(w.astype(np.int16)).max()) for w in onnx_w) == 127
    out = tmp_path / "ov8"
    assert cli(untrained_onnx, "--images", calib_images, "--out", out, "--targets", "onnxruntime,openvino",
               "--method", "minmax", "--count", "40", "--max-drop", "100", "--bench-iters", "0",
               "--openvino-weight-bits", "8") == 0
    assert max(int(np.abs(w.astype(np.int16)).max()) for w in _int8_weights(out / "openvino" / "model.int8.xml")) == 127


def test_held_out_views_out_of_range(untrained_onnx, calib_images, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli(untrained_onnx, "--images", calib_images, "--out", tmp_path / "o", "--auto", "--held-out-views", "5")
    assert exc.value.code == 2
    assert "--held-out-views: invalid choice: 5" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_existing_out_needs_force(untrained_onnx, calib_images, tmp_path, capsys):
    (tmp_path / "o").mkdir()
    assert cli(untrained_onnx, "--images", calib_images, "--out", tmp_path / "o", "--targets", "onnxruntime") == 2
    assert "--force" in capsys.readouterr().err


def test_out_must_not_contain_the_model(untrained_onnx, calib_images, tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    shutil.copy(untrained_onnx, run_dir / "model.onnx")
    assert cli(run_dir / "model.onnx", "--images", calib_images, "--out", run_dir, "--force") == 2
    assert "contains MODEL" in capsys.readouterr().err and (run_dir / "model.onnx").is_file()


def test_openvino_missing_names_the_extra(untrained_onnx, calib_images, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # what an install without openvino looks like
    assert cli(untrained_onnx, "--images", calib_images, "--out", tmp_path / "o", "--targets", "openvino") == 2
    assert "pip install 'gemsight[calibrate]'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
