"""The ranges and float layers of one run, as ``--method``/``--auto`` ask, and the advice of a failed gate.

:func:`plan` is the one place that decides what every artifact is made from: the range method (given,
or searched on a held-out part of the sample), the FP32 model of the FPGA form (equalized and
bias-corrected or not), the ranges on each, and the layers each QDQ form leaves in float. The
pipeline then writes every artifact from the returned :class:`Plan`.
"""
from __future__ import annotations

import logging
import shlex
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from calibration import gate, search
from calibration.equalize import prepare_fpga_fp32
from calibration.ranges import Ranges, compute_ranges

logger = logging.getLogger(__name__)

TOP_LAYERS = 3   # layers a failed gate names
PLOT = "sensitivity.png"


@dataclass
class Plan:
    method: str
    ranges: Ranges
    images: int                                   # images the ranges come from
    fpga_fp32: Path | None = None
    fpga_ranges: Ranges | None = None
    exclude: dict[str, list[str]] = field(default_factory=dict)   # form ("cpu", "tensorrt") → float layers
    record: dict = field(default_factory=dict)    # what calibration.json and report.json carry

    def models(self, fp32: Path) -> search.Models:
        return search.Models(fp32, self.ranges, self.fpga_fp32, self.fpga_ranges)


def plan(opts, fp32: Path, batch: np.ndarray, input_name: str, scratch: Path, stage: Path) -> Plan:
    """Decide the method, ranges, FPGA model and float layers for ``opts`` (a ``CalibrateOptions``)."""
    kinds = search.kinds_for(opts.targets)
    equalize = opts.fpga_equalize if opts.fpga_equalize is not None else opts.auto
    bias = opts.fpga_bias_correction if opts.fpga_bias_correction is not None else opts.auto
    record: dict = {}
    fpga_fp32 = None
    if "fpga" in kinds and (equalize or bias):
        fpga_fp32 = scratch / "fpga_fp32.onnx"
        record["fpga_adjustments"] = prepare_fpga_fp32(fp32, fpga_fp32, batch, input_name, equalization=equalize,
                                                       bias_correction=bias).to_json()
    searching = opts.method == "auto" or opts.auto or opts.sensitivity
    user_exclude = list(opts.exclude)
    if not searching:
        ranges = compute_ranges(fp32, batch, input_name, opts.method)
        fpga_ranges = compute_ranges(fpga_fp32, batch, input_name, opts.method) if fpga_fp32 else None
        return Plan(opts.method, ranges, len(batch), fpga_fp32, fpga_ranges,
                    {k: list(user_exclude) for k in search.FALLBACK_KINDS}, record)

    calib, held = search.split_sample(batch)
    record["holdout"] = {"ranges_images": len(calib), "held_out_images": len(held),
                         "views": opts.held_out_views, "agreement_target": opts.agreement_target}
    held = search.views(held, opts.held_out_views)
    ref = search.run_model(fp32, held, opts.threads)
    with search.Evaluator(held, ref, opts.threads) as ev:
        if opts.method == "auto":
            found = search.search_method(fp32, calib, ev, input_name, kinds, fpga_fp32, tuple(opts.candidates))
            method, ranges, fpga_ranges = found.chosen, found.ranges[found.chosen], found.fpga_ranges.get(found.chosen)
            record["method_search"] = found.to_json()
        else:
            method = opts.method
            ranges = compute_ranges(fp32, calib, input_name, method)
            fpga_ranges = compute_ranges(fpga_fp32, calib, input_name, method) if fpga_fp32 else None
        p = Plan(method, ranges, len(calib), fpga_fp32, fpga_ranges,
                 {k: list(user_exclude) for k in search.FALLBACK_KINDS}, record)
        models = p.models(fp32)
        rows, fallback = {}, {}
        for kind in kinds:
            base, rows[kind] = search.sensitivity(models, kind, ev)
            record.setdefault("sensitivity", {})[kind] = {"all_int8": base.to_json(), "layers": rows[kind]}
            if opts.auto and kind in search.FALLBACK_KINDS:
                ranked = [r["layer"] for r in rows[kind] if r["layer"] not in user_exclude]
                start = ev.score(models, kind, tuple(user_exclude)) if user_exclude else base
                layers, score, reached = search.fallback(models, kind, ev, ranked, opts.agreement_target, start)
                p.exclude[kind] = user_exclude + layers
                fallback[kind] = p.exclude[kind]
                record.setdefault("fallback", {})[kind] = {"layers": p.exclude[kind], "held_out": score.to_json(),
                                                           "reached": reached}
                logger.info("%s: %d layer(s) left in float for %.2f%% held-out agreement (target %.2f%%)%s", kind,
                            len(p.exclude[kind]), score.agreement, opts.agreement_target,
                            "" if reached else ": target NOT reached")
        logger.info("held-out scoring: %d QDQ models built", ev.builds)
    if search.plot_sensitivity(rows, fallback, stage / PLOT):
        record["sensitivity_plot"] = PLOT
    if p.exclude.get("cpu") and opts.bench_iters and "onnxruntime" in opts.targets:
        record["speed_cost"] = search.speed_cost(models, p.exclude["cpu"], held, opts.bench_iters, gate.throughput,
                                                 opts.threads)
    return p


def diagnose(opts, fp32: Path, p: Plan, batch: np.ndarray, failures: list[gate.Result]) -> dict:
    """The sensitivity of the failing forms, measured on ``batch`` when ``plan`` did not measure it."""
    known = p.record.get("sensitivity", {})
    kinds = [k for k in dict.fromkeys(search.KINDS[r.target] for r in failures if r.target) if k not in known]
    if not kinds or not opts.diagnose:
        return known
    ref = search.run_model(fp32, batch, opts.threads)
    with search.Evaluator(batch, ref, opts.threads) as ev:
        models = p.models(fp32)
        for kind in kinds:
            base, rows = search.sensitivity(models, kind, ev)
            known[kind] = {"all_int8": base.to_json(), "layers": rows, "measured_on": "calibration sample"}
    p.record["sensitivity"] = known
    return known


def fix_command(opts, prog: str, failures: list[gate.Result], p: Plan) -> list[str]:
    """The command line most likely to pass: ``--auto`` first; under ``--auto``, a stricter held-out
    target (more layers in float) and a larger sample; an FPGA-only failure under ``--auto`` has no
    float fallback, so the advice there is a larger sample."""
    args = [prog, str(opts.model), "--images", str(opts.images), "--out", str(opts.out)]
    if opts.val is not None:
        args += ["--val", str(opts.val)]
    if tuple(opts.targets) != gate.TARGETS:
        args += ["--targets", ",".join(opts.targets)]
    if opts.max_drop != 0.5:
        args += ["--max-drop", f"{opts.max_drop:g}"]
    if opts.threads:
        args += ["--threads", str(opts.threads)]
    if opts.force:
        args.append("--force")
    count = opts.count
    args.append("--auto")
    if opts.held_out_views != search.VIEWS:
        args += ["--held-out-views", str(opts.held_out_views)]
    if opts.auto:
        if any(search.KINDS[r.target] in search.FALLBACK_KINDS for r in failures if r.target):
            args += ["--agreement-target", f"{min(100.0, opts.agreement_target + 0.5):g}"]
        count = opts.count * 2
    if count != 512:
        args += ["--count", str(count)]
    return args


def advice(failures: list[gate.Result], sensitivity: dict, command: list[str]) -> tuple[str, list[dict]]:
    """One line per failing target (its worst layers) and the command to run; also as JSON."""
    entries, lines = [], []
    for r in failures:
        kind = search.KINDS.get(r.target or "", "cpu")
        rows = sensitivity.get(kind, {}).get("layers", [])[:TOP_LAYERS]
        worst = [{"layer": x["layer"], "gain_kl": x["gain_kl"], "gain_agreement": x["gain_agreement"]} for x in rows]
        entries.append({"target": r.target, "form": kind, "drop": round(r.drop, 3), "agreement": round(r.agreement, 3),
                        "worst_layers": worst})
        named = ", ".join(f"{w['layer']} ({100 * w['gain_kl']:.0f}% of the error, {w['gain_agreement']:+.1f} pt "
                          "agreement in float)" for w in worst) or "not measured (--no-diagnose)"
        lines.append(f"target '{r.target}': layers that hurt most: {named}")
    text = "; ".join(lines) + f". Try: {shlex.join(command)}"
    return text, entries


def scratch_dir():
    """A scratch directory for models that are not artifacts (the FPGA form's FP32 model)."""
    return tempfile.TemporaryDirectory(prefix="gemsight-plan-")
