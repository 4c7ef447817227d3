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
        f"- status: **{report['status']}** (gate: top-1 drop ≤ {report['max_drop']:g} points)",
        f"- source model: `{report['source_model']}`",
        f"- method: {report['method']}, {report['calibration_images']} calibration images, "
        f"digest `{report['calibration_digest'][:16]}…`",
        f"- evaluated on: {report['evaluation']}",
        f"- CPU threads for timing: {report.get('threads') or 'all'}",
        "",
        "| row | artifact | top-1 % | drop (pts) | macro-F1 % | agreement % | max / mean logit err | size MB "
        "| img/s b1 | img/s b8 | × FP32 b1 | × FP32 b8 | gate |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        gate = ("pass" if r["passed"] else "**FAIL**") if r["gated"] else "—"
        lines.append(
            f"| {r['name']} | `{r['artifact']}` | {r['top1']:.2f} | {r['drop']:+.2f} | {r['macro_f1']:.2f} "
            f"| {r['agreement']:.2f} | {r['max_logit_error']:.4f} / {r['mean_logit_error']:.4f} "
            f"| {r['size_bytes'] / 1e6:.1f} | {_fmt(r['throughput'].get('b1'), '.1f')} "
            f"| {_fmt(r['throughput'].get('b8'), '.1f')} | {_fmt(r['speedup'].get('b1'), '.2f', '×')} "
            f"| {_fmt(r['speedup'].get('b8'), '.2f', '×')} | {gate} |")
    notes = [f"- **{r['name']}**: {r['note']}" for r in report["results"] if r.get("note")]
    if notes:
        lines += ["", "Notes:", *notes]
    if report.get("failures"):
        lines += ["", "Failed: " + report["failure_message"]]
    return "\n".join(lines) + "\n"


def write_report(out_dir: str | Path, results: list[Result], context: dict[str, Any]) -> dict[str, Any]:
    """Write ``report.json`` and ``report.md`` into ``out_dir``; return the report."""
    out_dir = Path(out_dir)
    report = build_report(results, context)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out_dir / "report.md").write_text(render_markdown(report), encoding="utf-8")
    return report
