"""``gemsight-calibrate``'s work: one calibration pass, every artifact, the report and the gate.

Publishing is all-or-nothing. Everything is built in a hidden staging directory beside OUT
(``.OUT.tmp-<pid>``); only when every gated target passes is it renamed to OUT (an existing OUT,
with ``--force``, is swapped out and removed only after the rename). When the gate fails, OUT is
not created or touched: the report (status ``failed``) is kept in ``OUT.rejected/`` for reading,
every artifact is deleted, and the command exits non-zero naming the target and its drop.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from calibration import data as calib_data
from calibration import auto, fpga, gate, mismatch, qdq, report, search, trt_cache
from calibration.openvino_export import export_openvino, require_openvino
from calibration.ranges import AUTO_CANDIDATES, METHODS
from edge.errors import CalibrationError, ConfigError
from edge.manifest import CalibrationInfo, Manifest, embed_manifest, file_digest, load_manifest_for
from edge.runtimes import artifacts
from edge.runtimes.registry import create_runtime

logger = logging.getLogger(__name__)

DEFAULT_TARGETS = gate.TARGETS
PROG = "gemsight-calibrate"


@dataclass
class CalibrateOptions:
    """Resolved options of one calibration run (the CLI's arguments)."""

    model: Path
    images: Path
    out: Path
    count: int = 512
    method: str = "percentile"
    targets: tuple[str, ...] = DEFAULT_TARGETS
    val: Path | None = None
    max_drop: float = 0.5
    force: bool = False
    bench_iters: int = 20
    threads: int | None = None
    seed: int = calib_data.SEED
    #: ``--auto``: search the method (with ``method="auto"``), leave the fewest layers in float that
    #: reach ``agreement_target`` on the held-out images, equalize and bias-correct the FPGA model.
    auto: bool = False
    agreement_target: float = 99.0
    held_out_views: int = search.VIEWS    # views of each held-out image --auto scores (1: as drawn)
    #: Weight bits of the OpenVINO INT8 IR: 7 cannot saturate on a CPU without VNNI (8: as model.int8.onnx).
    openvino_weight_bits: int = 7
    sensitivity: bool = False             # measure per-layer sensitivity (and plot it) without --auto
    exclude: tuple[str, ...] = ()         # nodes every QDQ form but FPGA leaves in float
    fpga_equalize: bool | None = None     # None: as --auto
    fpga_bias_correction: bool | None = None
    diagnose: bool = True                 # on a failed gate, measure which layers hurt (when not yet known)
    candidates: tuple[str, ...] = AUTO_CANDIDATES   # what --method auto tries


def parse_targets(text: str) -> tuple[str, ...]:
    """``"onnxruntime,openvino"`` → targets in canonical order.

    Raises:
        ConfigError: an unknown or empty target list; the message names the bad entry.
    """
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise ConfigError(f"--targets is empty (choose from {', '.join(gate.TARGETS)})")
    unknown = [t for t in names if t not in gate.TARGETS]
    if unknown:
        raise ConfigError(f"unknown target(s) {', '.join(repr(u) for u in unknown)} in --targets "
                          f"(choose from {', '.join(gate.TARGETS)})")
    return tuple(t for t in gate.TARGETS if t in names)


def _check_paths(opts: CalibrateOptions) -> None:
    out = opts.out.resolve()
    for name, path in (("MODEL", opts.model), ("--images", opts.images), ("--val", opts.val)):
        if path is not None and (out == path.resolve() or out in path.resolve().parents):
            raise CalibrationError(f"--out {opts.out} contains {name} {path}; choose another output directory")
    if opts.out.exists() and not opts.force:
        raise CalibrationError(f"{opts.out} already exists; pass --force to replace it")
    if opts.method not in (*METHODS, "auto"):
        raise ConfigError(f"unknown --method '{opts.method}' (choose {', '.join(METHODS)} or auto)")


def _threads(opts: CalibrateOptions) -> dict:
    return {"threads": opts.threads} if opts.threads else {}


def _reembed(path: Path, manifest: Manifest) -> None:
    import onnx  # noqa: PLC0415

    onnx.save(embed_manifest(onnx.load(str(path)), manifest), str(path))


def _metrics(results: list[gate.Result], labelled: bool) -> dict[str, float]:
    by_name = {r.name: r for r in results}
    int8 = by_name.get("onnxruntime") or next((r for r in results if r.gated), None)
    metrics = {}
    if labelled:
        metrics["fp32_accuracy"] = round(by_name["fp32"].top1 / 100.0, 6)
        if int8 is not None:
            metrics["int8_accuracy"] = round(int8.top1 / 100.0, 6)
    if int8 is not None:
        metrics["int8_agreement"] = round(int8.agreement / 100.0, 6)
    return metrics


def build_artifacts(opts: CalibrateOptions, manifest: Manifest, stage: Path,
                    scratch: Path | None = None) -> tuple[calib_data.ImageSet, dict, auto.Plan]:
    """Write every artifact of the chosen targets into ``stage``; return the sample, the calibration
    record and the plan (method, ranges, float layers) they were written from."""
    fp32 = qdq.prepare_fp32(opts.model, stage / artifacts.FP32_ONNX, manifest)
    sample = calib_data.load_calibration_set(opts.images, manifest.input, opts.count, opts.seed)
    p = auto.plan(opts, fp32, sample.batch, manifest.input.name, scratch or stage, stage)
    ranges = p.ranges
    info = CalibrationInfo(method=p.method, images=p.images, digest=sample.digest)
    # The QDQ model is the INT8 reference (OpenVINO converts it, the manifest's int8 metrics come
    # from it), so it is written whatever the targets.
    qdq.write_cpu_int8(fp32, stage / artifacts.INT8_ONNX, ranges, manifest, info, tuple(p.exclude.get("cpu", ())))
    scales = {name: trt_cache.symmetric_scale(amax) for name, amax in ranges.amaxes().items()}
    if "tensorrt" in opts.targets:
        trt_cache.write_cache(stage / artifacts.CALIB_CACHE, scales)
        qdq.write_tensorrt_int8(fp32, stage / artifacts.TRT_INT8_ONNX, ranges, manifest, info,
                                tuple(p.exclude.get("tensorrt", ())))
    if "openvino" in opts.targets:
        int8_source = stage / artifacts.INT8_ONNX
        with tempfile.TemporaryDirectory(prefix="gemsight-ov-") as tmp:
            if opts.openvino_weight_bits != 8:
                int8_source = qdq.cpu_qdq(fp32, Path(tmp) / "model.int8.onnx", ranges,
                                          tuple(p.exclude.get("cpu", ())), weight_bits=opts.openvino_weight_bits)
            export_openvino(fp32, int8_source, stage / artifacts.OPENVINO_DIR)
    if "fpga" in opts.targets:
        fpga.write_fpga(p.fpga_fp32 or fp32, stage / artifacts.FPGA_ONNX, p.fpga_ranges or ranges, manifest, info)
    record = {
        "method": p.method,
        "count_requested": opts.count,
        "source_model": str(opts.model),
        "source_model_sha256": file_digest(opts.model),
        "sample": sample.describe(),
        "digest": sample.digest,
        "ranges": ranges.to_json(),
        "trt_scales": {name: scales[name] for name in sorted(scales)},
        "float_layers": {k: v for k, v in p.exclude.items() if v},
        **({"openvino_weight_bits": opts.openvino_weight_bits} if "openvino" in opts.targets else {}),
        **p.record,
    }
    if p.fpga_ranges is not None:
        record["fpga_ranges"] = p.fpga_ranges.to_json()
    (stage / "calibration.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return sample, record, p


def _publish(stage: Path, out: Path) -> None:
    backup = None
    if out.exists():
        backup = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, backup)
    os.replace(stage, out)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def _reject(stage: Path, out: Path) -> Path:
    rejected = out.with_name(out.name + ".rejected")
    shutil.rmtree(rejected, ignore_errors=True)
    rejected.mkdir(parents=True)
    for name in ("report.json", "report.md", "calibration.json", auto.PLOT):
        if (stage / name).is_file():
            shutil.copy2(stage / name, rejected / name)
    return rejected


def run(opts: CalibrateOptions) -> dict:
    """Calibrate, build, evaluate, gate, publish. Returns the report.

    Raises:
        ManifestError: the model has no manifest.
        CalibrationError: bad input (too few images, existing OUT, OpenVINO missing ...).
        AccuracyGateError: a target failed the gate (nothing published).
    """
    started = time.perf_counter()
    if "openvino" in opts.targets:
        require_openvino()
    manifest = load_manifest_for(opts.model)
    _check_paths(opts)
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    stage = opts.out.with_name(f".{opts.out.name}.tmp-{os.getpid()}")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    scratch = auto.scratch_dir()
    try:
        sample, record, plan = build_artifacts(opts, manifest, stage, Path(scratch.name))
        if opts.val is not None:
            val = calib_data.load_labelled_set(opts.val, manifest.input, manifest.classes)
            batch, labels, labelled = val.batch, val.labels, True
            evaluation = f"--val {opts.val} ({len(val.files)} labelled images, digest {val.digest[:16]}…)"
            unlike = mismatch.compare(stage / artifacts.FP32_ONNX, sample.batch, val.batch, manifest.input.name)
        else:
            batch, labels, labelled, unlike = sample.batch, None, False, None
            evaluation = (f"the {len(sample.files)} calibration images with FP32's predictions as labels "
                          "(no --val: top-1 equals agreement with FP32)")
        if labels is None:
            with create_runtime("onnxruntime", stage / artifacts.FP32_ONNX, **_threads(opts)) as rt:
                labels = gate.run_all(rt, batch).argmax(1)
        results = gate.evaluate(stage, opts.targets, batch, np.asarray(labels), opts.bench_iters, opts.threads)
        failures = gate.apply_gate(results, opts.max_drop)
        message = gate.gate_message(failures, opts.max_drop) if failures else ""
        advice_text, advice = "", []
        if failures:
            sensitivity = auto.diagnose(opts, stage / artifacts.FP32_ONNX, plan, sample.batch, failures)
            advice_text, advice = auto.advice(failures, sensitivity, auto.fix_command(opts, PROG, failures, plan))
            message = f"{message}. {advice_text}"
        context = {
            "status": "failed" if failures else "passed", "max_drop": opts.max_drop,
            "model_name": manifest.name, "model_version": manifest.version, "source_model": str(opts.model),
            "method": plan.method, "targets": list(opts.targets), "calibration_images": len(sample.files),
            "calibration_digest": record["digest"], "evaluation": evaluation, "labelled": labelled,
            "threads": opts.threads, "failures": [r.name for r in failures], "failure_message": message,
            "seconds": round(time.perf_counter() - started, 1),
            "auto": opts.auto, "ranges_images": plan.images, "advice": advice,
            "calibration_vs_val": unlike.to_json() if unlike is not None else None,
            **{k: plan.record[k] for k in ("holdout", "method_search", "sensitivity", "fallback", "speed_cost",
                                           "sensitivity_plot", "fpga_adjustments") if k in plan.record},
            "float_layers": {k: v for k, v in plan.exclude.items() if v},
        }
        rep = report.write_report(stage, results, context)
        if failures:
            rejected = _reject(stage, opts.out)
            raise gate.AccuracyGateError(f"{message}; nothing was published to {opts.out} "
                                         f"(report in {rejected})")
        fp32_manifest = manifest.updated(metrics={**manifest.metrics, **_metrics(results, labelled)})
        fp32_manifest.save(stage / "manifest.json")
        _reembed(stage / artifacts.FP32_ONNX, fp32_manifest)
        for rel in (artifacts.INT8_ONNX, artifacts.TRT_INT8_ONNX, artifacts.FPGA_ONNX):
            if (stage / rel).is_file():
                int8 = fp32_manifest.updated(precision="int8", calibration=CalibrationInfo(
                    method=plan.method, images=plan.images, digest=record["digest"]))
                _reembed(stage / rel, int8)
        _publish(stage, opts.out)
        logger.info("published %s in %.1fs", opts.out, time.perf_counter() - started)
        return rep
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        scratch.cleanup()
