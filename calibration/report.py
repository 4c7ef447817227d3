"""``report.json`` and ``report.md``: what each artifact costs in accuracy and buys in speed."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from calibration.gate import Result

logger = logging.getLogger(__name__)


def _fmt(value: float | None, spec: str = ".2f", suffix: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{suffix}"


def build_report(results: list[Result], context: dict[str, Any]) -> dict[str, Any]:
    """The JSON report: the run's context (model, method, sample, gate) and one entry per row."""
    return {"schema": 1, **context, "results": [r.as_dict() for r in results]}


def render_markdown(report: dict[str, Any]) -> str:
    """A human-readable table of the JSON report."""
    lines = [
        f"# Calibration report: {report.get('model_name', '')} {report.get('model_version', '')}".rstrip(),
        "",
        f"- status: **{report['status']}** (gate: top-1 drop ≤ {report['max_drop']:g} points; embeddings' median "
        "cosine to FP32's ≥ 0.98)",
        f"- source model: `{report['source_model']}`",
        f"- method: {report['method']}, {report['calibration_images']} calibration images, "
        f"digest `{report['calibration_digest'][:16]}…`",
        f"- evaluated on: {report['evaluation']}",
        f"- CPU threads for timing: {report.get('threads') or 'all'}",
        "",
        "| row | artifact | top-1 % | drop (pts) | macro-F1 % | agreement % | embedding cos | max / mean logit err "
        "| size MB | img/s b1 | img/s b8 | × FP32 b1 | × FP32 b8 | gate |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        gate = ("pass" if r["passed"] else "**FAIL**") if r["gated"] else "—"
        lines.append(
            f"| {r['name']} | `{r['artifact']}` | {r['top1']:.2f} | {r['drop']:+.2f} | {r['macro_f1']:.2f} "
            f"| {r['agreement']:.2f} | {_fmt(r.get('embedding_cosine'), '.4f')} "
            f"| {r['max_logit_error']:.4f} / {r['mean_logit_error']:.4f} "
            f"| {r['size_bytes'] / 1e6:.1f} | {_fmt(r['throughput'].get('b1'), '.1f')} "
            f"| {_fmt(r['throughput'].get('b8'), '.1f')} | {_fmt(r['speedup'].get('b1'), '.2f', '×')} "
            f"| {_fmt(r['speedup'].get('b8'), '.2f', '×')} | {gate} |")
    notes = [f"- **{r['name']}**: {r['note']}" for r in report["results"] if r.get("note")]
    if notes:
        lines += ["", "Notes:", *notes]
    if report.get("failures"):
        lines += ["", "Failed: " + report["failure_message"]]
    lines += _mismatch(report) + _search(report) + _fallback(report) + _fpga(report) + _sensitivity(report)
    return "\n".join(lines) + "\n"


def _mismatch(report: dict[str, Any]) -> list[str]:
    m = report.get("calibration_vs_val")
    if not m:
        return []
    head = ("**WARNING: the calibration photos look unlike the validation photos**" if m["warning"]
            else "Calibration vs validation photos: alike")
    return ["", f"{head} (largest shift {m['score']:.2f} in {m['worst']}; warning above {m['threshold']:g})"]


def _search(report: dict[str, Any]) -> list[str]:
    s = report.get("method_search")
    if not s:
        return []
    h = report.get("holdout", {})
    kinds = list(next(iter(s["held_out_scores"].values())).keys())
    lines = ["", f"## Range method: {s['chosen']}", "",
             f"Top-1 agreement with FP32 on {h.get('held_out_images', '?')} held-out calibration images "
             f"(ranges from the other {h.get('ranges_images', '?')}; KL of the softmax in brackets):", "",
             "| method | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds)]
    for method, by_kind in s["held_out_scores"].items():
        mark = " **(chosen)**" if method == s["chosen"] else ""
        lines.append(f"| {method}{mark} | " + " | ".join(
            f"{by_kind[k]['agreement']:.2f}% ({by_kind[k]['kl']:.4f})" for k in kinds) + " |")
    return lines


def _fallback(report: dict[str, Any]) -> list[str]:
    fb = report.get("fallback")
    if not fb:
        return []
    lines = ["", "## Layers left in float", ""]
    for kind, entry in fb.items():
        layers = ", ".join(f"`{x}`" for x in entry["layers"]) or "none"
        reached = "" if entry["reached"] else " (**target not reached**)"
        lines.append(f"- {kind}: {layers} → held-out agreement {entry['held_out']['agreement']:.2f}%{reached}")
    cost = report.get("speed_cost")
    if cost:
        lines += ["", "Speed on this CPU (ONNX Runtime, img/s):", "", "| model | b1 | b8 |", "|---|---|---|"]
        for label, speed in cost.items():
            lines.append(f"| {label} | {_fmt(speed.get('b1'), '.1f')} | {_fmt(speed.get('b8'), '.1f')} |")
    return lines


def _fpga(report: dict[str, Any]) -> list[str]:
    adj = report.get("fpga_adjustments")
    if not adj:
        return []
    return ["", f"FPGA model: {len(adj['equalized_pairs'])} conv pair(s) cross-layer equalized, "
                f"{len(adj['bias_corrected'])} bias(es) corrected for power-of-two weight rounding."]


def _sensitivity(report: dict[str, Any]) -> list[str]:
    sens = report.get("sensitivity")
    if not sens:
        return []
    lines = ["", "## Per-layer sensitivity", "",
             "Each layer left alone in float, every other layer int8: the share of the all-int8 error "
             "(KL from FP32) it removes and the agreement it recovers."]
    if report.get("sensitivity_plot"):
        lines += ["", f"![per-layer sensitivity]({report['sensitivity_plot']})"]
    for kind, entry in sens.items():
        lines += ["", f"{kind} (all int8: agreement {entry['all_int8']['agreement']:.2f}%), most sensitive first:", "",
                  "| layer | % of KL removed | agreement gain (pts) |", "|---|---|---|"]
        for row in entry["layers"][:10]:
            lines.append(f"| `{row['layer']}` | {100 * row['gain_kl']:.1f} | {row['gain_agreement']:+.2f} |")
    return lines


def write_report(out_dir: str | Path, results: list[Result], context: dict[str, Any]) -> dict[str, Any]:
    """Write ``report.json`` and ``report.md`` into ``out_dir``; return the report."""
    out_dir = Path(out_dir)
    report = build_report(results, context)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out_dir / "report.md").write_text(render_markdown(report), encoding="utf-8")
    return report
