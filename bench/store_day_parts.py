"""The store-day benchmark's two side measurements (``bench/store_day.py``).

* :func:`fps_rounds`: the loop's frames/s with embeddings and slot states against the same model without
  its embedding output and with states off, interleaved rounds in one run (the video read as fast as the
  loop takes it).
* :func:`int8_agreement`: calibrate the model on the case's own slot crops for every target and read each
  target's median cosine of INT8 embeddings to FP32's (the calibration gate measures it).
"""
from __future__ import annotations

import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

import cv2
import yaml

from edge.config.device import SlotConfig
from edge.loop.run import CameraLoop
from edge.loop.slots import SlotMap
from edge.manifest import embed_manifest, load_manifest_for

from bench import store_day_kit as kit

logger = logging.getLogger("store_day")
ROUND_FRAMES = 1000   # 400-frame rounds (about 9 s) moved by up to 30% with whatever else the machine did


def strip_embedding(model: Path, out: Path) -> Path:
    """The same ONNX model without its embedding output, and a manifest that names none (today's model)."""
    import onnx

    manifest = load_manifest_for(model)
    proto = onnx.load(str(model))
    keep = [o for o in proto.graph.output if manifest.embedding is None or o.name != manifest.embedding.name]
    del proto.graph.output[:]
    proto.graph.output.extend(keep)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "model.onnx"
    onnx.save(embed_manifest(proto, manifest.updated(embedding=None)), str(path))
    return path


def fps_rounds(day: dict, model: Path, work: Path, rounds: int, frames: int = ROUND_FRAMES) -> dict[str, Any]:
    """Frames/s of the loop, ``rounds`` interleaved rounds of ``frames`` frames of each variant on one filmed day."""
    work = work / f"fps-{time.strftime('%Y%m%d-%H%M%S')}"    # a run of its own: keys are never overwritten
    plain = strip_embedding(model, work / "model-plain")
    keys = kit.keys(work / "keys")
    fps: dict[str, list[float]] = {"with states": [], "without": []}
    for r in range(rounds):
        order = ("with states", "without") if r % 2 == 0 else ("without", "with states")
        for variant in order:
            states = variant == "with states"
            run_dir = work / f"{r}-{'states' if states else 'plain'}"
            run_dir.mkdir(parents=True, exist_ok=True)
            config = kit.device_config([day], model if states else plain, run_dir, keys, 1.0, states=states,
                                       realtime=False)
            result = CameraLoop(config, samples=0).run(max_frames=frames)
            fps[variant].append(sum(result.frames.values()) / max(result.steady_s, 1e-9))
            logger.info("frames/s round %d %s: %.1f", r, variant, fps[variant][-1])
    med = {k: statistics.median(v) for k, v in fps.items()}
    return {"frames_per_round": frames, "rounds": fps, "median": med,
            "ratio": med["with states"] / med["without"],
            "ratios": [a / b for a, b in zip(fps["with states"], fps["without"])]}


def slot_crops(days: list[dict], out: Path, every: int = 25) -> Path:
    """Every ``every``-th frame's slot crops of each day, as JPEGs in ``out/crops`` (calibration photos)."""
    folder = out / "crops"
    folder.mkdir(parents=True, exist_ok=True)
    for d, day in enumerate(days):
        slots = [SlotConfig.model_validate(s) for s in yaml.safe_load(Path(day["slots"]).read_text())["slots"]]
        smap = SlotMap(slots, camera=f"case{d}")
        cap = cv2.VideoCapture(str(day["video"]))
        index = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if index % every == 0:
                for name, crop in zip(smap.names, smap.crop(frame)):
                    cv2.imwrite(str(folder / f"d{d}_{index:06d}_{name}.jpg"), crop)
            index += 1
        cap.release()
    return folder


def int8_agreement(model: Path, days: list[dict], work: Path) -> dict[str, Any]:
    """Calibrate on the days' slot crops for every target; each target's top-1 agreement and embedding cosine."""
    from calibration.cli import main as calibrate

    crops = slot_crops(days, work / "int8")
    out = work / "int8" / "model"
    rc = calibrate([str(model), "--images", str(crops), "--out", str(out), "--bench-iters", "0", "--force",
                    "--targets", "onnxruntime,tensorrt,openvino,fpga", "--auto"])
    report_path = out / "report.json" if out.is_dir() else next(out.parent.glob(f"{out.name}.rejected*/report.json"))
    logger.info("calibration on the case's crops: exit %d, report %s", rc, report_path)
    rep = json.loads(report_path.read_text())
    rows = {r["name"]: {"agreement": r["agreement"], "embedding_cosine": r.get("embedding_cosine"),
                        "passed": r["passed"]} for r in rep["results"] if r["name"] != "fp32"}
    return {"exit_code": rc, "images": rep.get("calibration_images"), "targets": rows,
            "failure": rep.get("failure_message") or None, "model_dir": str(out) if rc == 0 and out.is_dir() else None}
