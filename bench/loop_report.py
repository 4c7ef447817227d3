"""The tables of ``bench/loop.py`` (printed, and written into docs/benchmarks.md between the loop markers),
rendered from its JSON report alone."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGE_ORDER = ("decode", "crop", "preprocess", "infer", "postprocess", "encode", "send")
README_START, README_END = "<!-- loop:start -->", "<!-- loop:end -->"


def headline_table(report: dict) -> list[str]:
    lines = ["| runtime | reference loop | gemsight | gemsight ÷ reference, frames/s (median, range of rounds) | "
             "capture→publish p50 / p99 at 10 fps: reference | gemsight | CPU per frame: reference / gemsight | "
             "cores: the loop's / the machine's busy (reference; gemsight) |",
             "|---|---|---|---|---|---|---|---|"]
    for h in report["runtimes"].values():
        ref, gem, ratio = h["reference"], h["gemsight"], h["ratio"]
        rc, gc_ = ref["capture_to_publish_ms"], gem["capture_to_publish_ms"]
        lines.append(f"| {h['runtime']} | {ref['frames_per_s']['median']:.1f} frames/s | "
                     f"{gem['frames_per_s']['median']:.1f} frames/s | **{ratio['median']:.2f}** "
                     f"({ratio['min']:.2f}–{ratio['max']:.2f}, {len(ratio['rounds'])} rounds) | "
                     f"{rc['p50']:.1f} / {rc['p99']:.1f} ms | {gc_['p50']:.1f} / {gc_['p99']:.1f} ms | "
                     f"{ref['cpu_ms_per_frame']:.1f} / {gem['cpu_ms_per_frame']:.1f} ms | "
                     f"{ref['cpu_cores']:.2f} / {ref.get('machine_busy_cores', float('nan')):.2f}; "
                     f"{gem['cpu_cores']:.2f} / {gem.get('machine_busy_cores', float('nan')):.2f} |")
    return lines


def alone_table(report: dict) -> list[str]:
    """The old figure: gemsight's loop against the runtime alone on the loop's batch (no camera, no decode)."""
    rows = [h for h in report["runtimes"].values() if "runtime_alone" in h]
    if not rows:
        return []
    lines = ["| runtime | runtime alone, batch of 12 | gemsight's loop ÷ runtime alone (median, range) |", "|---|---|---|"]
    for h in rows:
        a, r = h["runtime_alone"], h["loop_over_alone"]
        lines.append(f"| {h['runtime']} | {a['slot_images_per_s']:.0f} slot-images/s ({a['ms_per_batch']:.1f} ms) | "
                     f"{r['median']:.2f} ({r['min']:.2f}–{r['max']:.2f}) |")
    return lines


def stage_table(report: dict) -> list[str]:
    names = list(report["runtimes"])
    lines = ["| gemsight, stage (ms per frame, as fast as it goes) | " + " | ".join(names) + " |",
             "|---|" + "---|" * len(names)]
    for k in STAGE_ORDER:
        lines.append(f"| {k} | " + " | ".join(
            f"{report['runtimes'][n]['gemsight']['breakdown_ms_per_frame'][k]:.2f}" for n in names) + " |")
    roles = sorted({k for n in names for k in report["runtimes"][n]["gemsight"]["cpu_cores_by_role"]})
    for role in roles:
        lines.append(f"| CPU cores: {role} | " + " | ".join(
            f"{report['runtimes'][n]['gemsight']['cpu_cores_by_role'].get(role, 0.0):.2f}" for n in names) + " |")
    return lines


def scaling_table(report: dict) -> list[str]:
    lines = ["| cameras × slots | frames/s (all cameras, as fast as it goes) | CPU per frame | "
             "at 10 fps per camera: frames/s per camera, CPU cores, capture→publish p50 / p99 | peak RSS | "
             "what runs out first |",
             "|---|---|---|---|---|---|"]
    for r in report.get("scaling", []):
        c = r["capture_to_publish_ms"]
        lines.append(f"| {r['cameras']} × {r['slots_per_camera']} | {r['frames_per_s']:.1f} | "
                     f"{r['cpu_ms_per_frame']:.1f} ms | {r['paced_fps_per_camera']:.1f}, {r['cpu_cores_at_10fps']:.2f}, "
                     f"{c['p50']:.0f} / {c['p99']:.0f} ms | {r['peak_rss_mib']:.0f} MiB | {r['limit']} |")
    return lines


def readme(report: dict) -> str:
    """The loop's tables for docs/benchmarks.md, from the JSON."""
    la = report.get("load_average", [0, 0, 0])
    out = [f"Measured {report['measured_at']} on {report['cores']} cores ({report['cpu']}), load average "
           f"{la[0]:.2f} / {la[1]:.2f} / {la[2]:.2f} at the start, `python bench/loop.py"
           f"{' --quick' if report.get('quick') else ''}`; {report['model']}.", ""]
    out += headline_table(report)
    if alone_table(report):
        out += ["", "Against the runtime alone (no camera: the figure of issue 16):", ""] + alone_table(report)
    out += [""] + stage_table(report)
    if report.get("scaling"):
        out += ["", f"How cost grows ({report['scaling_runtime']}; one batch for every slot of every camera):", ""]
        out += scaling_table(report)
    return "\n".join(out)


def write_readme(report: dict, path: Path = ROOT / "docs" / "benchmarks.md") -> None:
    """Replace the text between the loop markers of docs/benchmarks.md with :func:`readme`."""
    text = path.read_text()
    start, end = text.index(README_START) + len(README_START), text.index(README_END)
    path.write_text(text[:start] + "\n" + readme(report) + "\n" + text[end:])
