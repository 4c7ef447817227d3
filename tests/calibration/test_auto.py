"""--auto on a three-layer model: method search, float fallback, FPGA equalization and bias
correction, the failed gate's advice, and the calibration-vs-validation warning."""
import itertools
import json

import cv2
import numpy as np
import onnx
import pytest

from calibration import data as calib_data
from calibration import equalize, fpga, mismatch, qdq, ranges, search
from calibration.gate import AccuracyGateError
from calibration.pipeline import CalibrateOptions, run
from edge.manifest import load_manifest_for
from tests.calibration.tiny import CLASSES, build_tiny
from tests.helpers import make_images

# Entropy's threshold search takes ~1 s per tensor; the tests try the histogram methods only.
FAST = ("percentile", "percentile-99.9", "mse", "minmax")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {"model": build_tiny(root / "model.onnx"), "unbalanced": build_tiny(root / "unbalanced.onnx", unbalanced=True),
            "images": make_images(root / "images", per_class=12, classes=CLASSES),
            "val": make_images(root / "val", per_class=6, seed=1, classes=CLASSES), "root": root}


def _batch(path, manifest, count=48):
    return calib_data.load_calibration_set(path, manifest.input, count, 0).batch


def test_split_holds_out_a_stratified_quarter():
    batch = np.arange(48, dtype=np.float32).reshape(48, 1, 1, 1)
    calib, held = search.split_sample(batch)
    assert len(held) == 16 and len(calib) == 32
    assert len(search.split_sample(np.zeros((512, 1, 1, 1)))[1]) == 128
    assert not set(held.ravel()) & set(calib.ravel())


def test_held_out_views_zoom_and_mirror_each_image():
    rng = np.random.default_rng(0)
    batch = rng.normal(size=(3, 3, 20, 30)).astype(np.float32)
    v = search.views(batch, 4)
    assert v.shape == (12, 3, 20, 30) and v.dtype == np.float32 and v.flags.c_contiguous
    assert np.array_equal(v[:3], batch)                              # as drawn
    # Zoomed: the top-left 80% crop scaled back; its corner pixel is the image's own corner.
    assert np.allclose(v[3:6, :, 0, 0], batch[:, :, 0, 0], atol=1e-5) and not np.allclose(v[3:6], batch)
    assert np.array_equal(v[6:9], batch[..., ::-1])                  # mirrored
    # The fourth view is the bottom-right crop, mirrored: its top-left pixel is the image's bottom-right.
    assert np.allclose(v[9:12, :, -1, 0], batch[:, :, -1, -1], atol=1e-5) and not np.allclose(v[9:12], v[3:6])
    assert np.array_equal(search.views(batch), v[:6])                # the default: as drawn, zoomed
    assert np.array_equal(search.views(batch, 1), batch)
    # Views of a constant image are that constant (no border, no interpolation bias).
    assert np.allclose(search.views(np.full((1, 3, 8, 8), 0.25, np.float32), 4), 0.25)
    with pytest.raises(ValueError, match="count must be 1-4, got 5"):
        search.views(batch, 5)


def test_method_search_picks_by_held_out_agreement(tiny, monkeypatch):
    manifest = load_manifest_for(tiny["model"])
    fp32 = qdq.prepare_fp32(tiny["model"], tiny["root"] / "fp32.onnx", manifest)
    calib, held = search.split_sample(_batch(tiny["images"], manifest))
    # The held-out scores decide: make entropy the only method that agrees fully on every form.
    wanted = {"mse": 100.0}

    def fake_score(self, models, kind, exclude=()):
        return search.Score(wanted.get(models.ranges.method, 95.0), 0.1)
    monkeypatch.setattr(search.Evaluator, "score", fake_score)
    with search.Evaluator(held, held[:, :4, 0, 0], 1) as ev:
        found = search.search_method(fp32, calib, ev, "input", ("cpu", "tensorrt"), candidates=FAST)
    assert found.chosen == "mse"
    assert set(found.scores) == set(FAST)
    # Every candidate's ranges come from the ranges part only.
    assert found.ranges["minmax"].tensors == ranges.compute_ranges(fp32, calib, "input", "minmax").tensors


def test_auto_run_reports_the_search_and_holds_out(tiny, tmp_path):
    out = tmp_path / "auto"
    rep = run(CalibrateOptions(model=tiny["model"], images=tiny["images"], out=out, count=48, method="auto", auto=True, candidates=FAST,
                               targets=("onnxruntime", "tensorrt", "fpga"), val=tiny["val"], max_drop=100.0,
                               bench_iters=1, threads=1))
    scores = rep["method_search"]["held_out_scores"]
    worst = {m: min(s["agreement"] for s in by_kind.values()) for m, by_kind in scores.items()}
    assert rep["method"] == rep["method_search"]["chosen"] and worst[rep["method"]] == max(worst.values())
    assert rep["holdout"] == {"ranges_images": 32, "held_out_images": 16, "views": 2, "agreement_target": 99.0}
    assert load_manifest_for(out / "model.int8.onnx").calibration.images == 32
    assert set(rep["sensitivity"]) == {"cpu", "tensorrt", "fpga"} and set(rep["fallback"]) == {"cpu", "tensorrt"}
    assert rep["fpga_adjustments"]["equalized_pairs"] == [["conv1", "conv2"]]
    md = (out / "report.md").read_text()
    assert "![per-layer sensitivity](sensitivity.png)" in md and (out / "sensitivity.png").stat().st_size > 1000
    assert "## Range method: " + rep["method"] in md


class _Toy(search.Evaluator):
    """Agreement as a known function of the float layers: a and b matter, c a little, d not at all."""

    def __init__(self):
        self.builds = 0

    def score(self, models, kind, exclude=()):
        self.builds += 1
        gain = {"a": 3.0, "b": 2.5, "c": 0.4, "d": 0.0}
        return search.Score(95.0 + sum(gain[x] for x in exclude), 0.0)


def test_fallback_is_minimal_and_meets_the_target():
    toy = _Toy()
    # A misleading ranking (d first) must still end with the smallest set.
    layers, score, reached = search.fallback(None, "cpu", toy, ["d", "c", "a", "b"], target=99.0)
    assert reached and score.agreement >= 99.0
    assert sorted(layers) == ["a", "b"]
    for layer in layers:
        assert toy.score(None, "cpu", tuple(x for x in layers if x != layer)).agreement < 99.0
    smallest = min((s for n in range(5) for s in itertools.combinations("abcd", n)
                    if toy.score(None, "cpu", s).agreement >= 99.0), key=len)
    assert len(layers) == len(smallest)
    _, _, reached = search.fallback(None, "cpu", _Toy(), ["a", "b", "c", "d"], target=101.0)
    assert not reached


def test_excluded_layers_get_no_qdq(tiny, tmp_path):
    out = tmp_path / "ex"
    run(CalibrateOptions(model=tiny["model"], images=tiny["images"], out=out, count=32, method="minmax",
                         targets=("onnxruntime", "tensorrt"), max_drop=100.0, bench_iters=0, threads=1,
                         exclude=("conv2",)))
    for rel in ("model.int8.onnx", "model.int8.trt.onnx"):
        model = onnx.load(str(out / rel))
        producers = {o: n.op_type for n in model.graph.node for o in n.output}
        conv2 = next(n for n in model.graph.node if n.name == "conv2")
        conv1 = next(n for n in model.graph.node if n.name == "conv1")
        assert producers.get(conv2.input[0]) != "DequantizeLinear" and conv2.input[1] == "w2", rel
        # The layer in float reads relu1's output: a ReLU folded into the removed Q/DQ pair would be lost
        # (negative values reaching conv2 made one float layer 20x worse than none on a real-photo model).
        assert producers.get(conv2.input[0]) == "Relu", rel
        assert producers.get(conv1.input[1]) == "DequantizeLinear", rel
    assert json.loads((out / "report.json").read_text())["float_layers"] == {"cpu": ["conv2"], "tensorrt": ["conv2"]}


def _fpga_error(fp32, batch, tmp, equalization, bias_correction):
    src = fp32
    if equalization or bias_correction:
        src = tmp / f"prep-{equalization}-{bias_correction}.onnx"
        equalize.prepare_fpga_fp32(fp32, src, batch, "input", equalization=equalization,
                                   bias_correction=bias_correction)
    qdq_path = tmp / f"fpga-{equalization}-{bias_correction}.onnx"
    fpga.fpga_qdq(src, qdq_path, ranges.compute_ranges(src, batch, "input", "percentile"))
    assert fpga.scale_violations(qdq_path) == []
    return float(np.abs(search.run_model(qdq_path, batch) - search.run_model(fp32, batch)).mean())


@pytest.mark.parametrize("which", ["unbalanced", "model"])
def test_equalization_and_bias_correction_move_fpga_closer_to_fp32(tiny, tmp_path, which):
    manifest = load_manifest_for(tiny[which])
    fp32 = qdq.prepare_fp32(tiny[which], tmp_path / "fp32.onnx", manifest)
    batch = _batch(tiny["images"], manifest)
    plain = _fpga_error(fp32, batch, tmp_path, False, False)
    equalized = _fpga_error(fp32, batch, tmp_path, True, False)
    both = _fpga_error(fp32, batch, tmp_path, True, True)
    bias_only = _fpga_error(fp32, batch, tmp_path, False, True)
    if which == "unbalanced":
        assert equalized < plain / 5   # the rounded-away channels come back
    else:
        # Balanced already: equalization has nothing to bring back (with ranges rounded up to a power
        # of two it may even cost a little here); bias correction alone still helps.
        assert bias_only < plain
    assert both < equalized
    # Equalization alone leaves the float function as it was.
    prep = tmp_path / "eq.onnx"
    equalize.prepare_fpga_fp32(fp32, prep, batch, "input", equalization=True, bias_correction=False)
    np.testing.assert_allclose(search.run_model(prep, batch), search.run_model(fp32, batch), atol=1e-4)


def test_failed_gate_names_target_layers_and_command(tiny, tmp_path):
    out = tmp_path / "fail"
    with pytest.raises(AccuracyGateError) as info:
        run(CalibrateOptions(model=tiny["unbalanced"], images=tiny["images"], out=out, count=32, method="minmax",
                             targets=("onnxruntime", "fpga"), max_drop=-1.0, bench_iters=0, threads=1))
    message = str(info.value)
    assert "target 'fpga'" in message and "layers that hurt most: conv" in message
    assert f"Try: gemsight-calibrate {tiny['unbalanced']} --images {tiny['images']} --out {out}" in message
    assert "--auto" in message and "--count 32" in message and "--targets onnxruntime,fpga" in message
    rep = json.loads((tmp_path / "fail.rejected" / "report.json").read_text())
    fpga_advice = next(a for a in rep["advice"] if a["target"] == "fpga")
    assert fpga_advice["worst_layers"] and fpga_advice["worst_layers"][0]["layer"] in {"conv1", "conv2", "fc"}


def _noise_images(root, per_class=8):
    rng = np.random.default_rng(3)
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            cv2.imwrite(str(root / name / f"{i}.png"), rng.integers(0, 256, (48, 56, 3), dtype=np.uint8))
    return root


def test_mismatch_warning(tiny, tmp_path):
    manifest = load_manifest_for(tiny["model"])
    val = calib_data.load_labelled_set(tiny["val"], manifest.input, manifest.classes).batch
    alike = mismatch.compare(tiny["model"], _batch(tiny["images"], manifest), val, "input")
    unlike = mismatch.compare(tiny["model"], _batch(_noise_images(tmp_path / "noise"), manifest, 32), val, "input")
    assert not alike.warning and unlike.warning
    assert unlike.score > 2 * alike.score and "unlike" in unlike.message()


@pytest.mark.parametrize("method", ["entropy", "percentile-99.9", "mse"])
def test_the_input_keeps_its_whole_range_whatever_the_method(tiny, tmp_path, method):
    """Normalised pixels have no outliers: clipping the brightest (a product photo's white background)
    cost real-photo FPGA models 15 points of agreement, so no method may cut the input's range."""
    manifest = load_manifest_for(tiny["model"])
    fp32 = qdq.prepare_fp32(tiny["model"], tmp_path / "fp32.onnx", manifest)
    batch = _batch(tiny["images"], manifest)
    r = ranges.candidate_ranges(fp32, batch, "input", (method,))[method]
    assert r.tensors["input"] == pytest.approx((float(batch.min()), float(batch.max())))
    assert float(r.ort_data["input"].highest) == pytest.approx(float(batch.max()))


def test_fpga_activation_scales_are_powers_of_two_that_never_clip_the_calibrated_range(tiny, tmp_path):
    import math

    from onnx import numpy_helper

    for s in (0.02077, 0.015625, 3.0, 1e-6):
        up = fpga.pow2_at_least(s)
        assert fpga.is_power_of_two(up) and s <= up < 2 * s
    manifest = load_manifest_for(tiny["model"])
    fp32 = qdq.prepare_fp32(tiny["model"], tmp_path / "fp32.onnx", manifest)
    batch = _batch(tiny["images"], manifest)
    r = ranges.compute_ranges(fp32, batch, "input", "percentile")
    out = fpga.fpga_qdq(fp32, tmp_path / "fpga.onnx", r)
    model = onnx.load(str(out))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    checked = 0
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] in r.tensors:
            scale = float(inits[node.input[1]])
            assert 127 * scale >= r.amax(node.input[0]) * (1 - 1e-6), node.input[0]
            assert math.log2(scale) == round(math.log2(scale))
            checked += 1
    assert checked >= 3
