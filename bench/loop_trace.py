"""Where a slow frame's time went: ``python bench/loop.py --trace onnxruntime``.

Runs gemsight's loop at 10 fps in a fresh child process with a timestamp per stage of every frame and
the process's other events on the same clock (garbage collections with their generation and length,
the video file's reopening: :func:`bench.loop_child.trace_loop`), then names, for every slow frame
(capture→publish more than ``SLOW_MS`` over the median), the stage that grew and the events that
overlapped it. Writes ``bench/results/loop_trace.json`` (the summary and the slow frames; ``--trace-all``
keeps every frame).
"""
from __future__ import annotations

import statistics

import numpy as np

SLOW_MS = 10.0   # a frame this much slower than the median is a slow frame


def analyse(trace: dict) -> dict:
    """The slow frames of a trace, each with the stage that grew most and the events during it."""
    frames = trace["frames"]
    totals = [f["total_ms"] for f in frames]
    p50 = statistics.median(totals)
    medians = {k: statistics.median(f["stages_ms"][k] for f in frames) for k in frames[0]["stages_ms"]}
    slow = []
    for f in frames:
        if f["total_ms"] <= p50 + SLOW_MS:
            continue
        excess = {k: v - medians[k] for k, v in f["stages_ms"].items()}
        t0, t1 = f["span"]
        during = [e for e in trace["events"] if e["t"] < t1 and e["t"] + e["ms"] / 1e3 > t0]
        slow.append({"index": f["index"], "total_ms": f["total_ms"], "excess_ms": f["total_ms"] - p50,
                     "stage": max(excess, key=excess.get), "stage_excess_ms": max(excess.values()),
                     "during": [f"{e['kind']} {e['ms']:.1f} ms ({e['thread']})" if e["thread"]
                                else f"{e['kind']} {e['ms']:.1f} ms" for e in during]})
    start, end = frames[0]["span"][0], frames[-1]["span"][1]
    events = [e for e in trace["events"] if start <= e["t"] <= end]   # not the set-up's (loading the model collects a lot)
    kinds = sorted({e["kind"] for e in events})
    seconds = end - start
    counts = {k: sum(e["kind"] == k for e in events) for k in kinds}
    lengths = {k: statistics.median(e["ms"] for e in events if e["kind"] == k) for k in kinds}
    with_event = {k: sum(any(d.startswith(k + " ") for d in s["during"]) for s in slow) for k in kinds}
    return {"frames": len(frames), "seconds": seconds,
            "capture_to_publish_ms": {"p50": p50, "p99": float(np.percentile(totals, 99)), "max": max(totals)},
            "stage_median_ms": medians, "slow_frames": len(slow), "slow_share": len(slow) / len(frames),
            "events_per_100_frames": {k: counts[k] * 100 / len(frames) for k in kinds}, "event_median_ms": lengths,
            "slow_frames_during": with_event,
            "slow_by_stage": {k: sum(s["stage"] == k for s in slow) for k in medians},
            "gc_threshold": trace.get("gc_threshold"), "gc_frozen": trace.get("gc_frozen"), "slow": slow}


def report(name: str, a: dict) -> list[str]:
    """The analysis as text lines."""
    c = a["capture_to_publish_ms"]
    lines = [f"{name}: {a['frames']} frames in {a['seconds']:.0f} s at 10 fps; capture→publish p50 {c['p50']:.1f} ms, "
             f"p99 {c['p99']:.1f} ms, max {c['max']:.1f} ms; gc thresholds {a['gc_threshold']}, "
             f"{a['gc_frozen']} objects frozen",
             f"  slow frames (> p50 + {SLOW_MS:g} ms): {a['slow_frames']} ({a['slow_share']:.1%}); the stage that grew: "
             + ", ".join(f"{k} {v}" for k, v in a["slow_by_stage"].items() if v)]
    for k, rate in a["events_per_100_frames"].items():
        lines.append(f"  {k}: {rate:.1f} per 100 frames, median {a['event_median_ms'][k]:.2f} ms; "
                     f"during {a['slow_frames_during'][k]} of the {a['slow_frames']} slow frames")
    for s in a["slow"][:12]:
        lines.append(f"  frame {s['index']}: +{s['excess_ms']:.1f} ms, {s['stage']} +{s['stage_excess_ms']:.1f} ms; "
                     f"during: {', '.join(s['during']) or 'nothing traced'}")
    return lines
