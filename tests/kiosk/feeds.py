"""Kiosk test helpers: configs, schema-valid messages with chosen slot labels, a device on loopback."""
from __future__ import annotations

import time
from typing import Any

from edge import messages

MODEL = {"name": "m", "version": "1.0.0", "precision": "int8", "backend": "onnxruntime"}
LAT = {"capture": 1.0, "preprocess": 2.0, "infer": 3.0, "postprocess": 0.1}
CLASSES = ("ring", "necklace", "earring", "bracelet", "pendant", "brooch", "watch", "empty")


def config_dict(tmp_path, devices: list[dict] | None = None, **top: Any) -> dict:
    """A plaintext loopback kiosk config: one device case-01, camera cam0 with four slots."""
    devices = devices or [{"id": "case-01", "labels": "tcp://127.0.0.1:1", "snapshot": "tcp://127.0.0.1:2",
                           "cameras": {"cam0": {"slots": {"r0c0": "ring", "r0c1": "ring", "r1c0": "watch",
                                                          "r1c1": "sold"}}}}]
    return {"store": "Test store", "state_dir": str(tmp_path / "state"), "curve": None, "devices": devices, **top}


def labels(slots: dict[str, str], *, device: str = "case-01", camera: str = "cam0", seq: int = 0,
           model: dict | None = None, score: float = 0.97) -> dict:
    """A schema-valid labels message whose slots carry exactly these labels."""
    counts = {c: 0 for c in (*CLASSES, "unknown")}
    for lab in slots.values():
        counts[lab] = counts.get(lab, 0) + 1
    now = time.time()
    return {"schema_version": messages.SCHEMA_VERSION, "kind": "labels", "device": device, "camera": camera,
            "seq": seq, "capture_ts": now, "publish_ts": now, "model": dict(model or MODEL),
            "slots": [{"name": n, "label": lab, "score": score, "topk": [{"label": lab, "score": score}],
                       "stable": True} for n, lab in slots.items()],
            "counts": counts, "latencies_ms": dict(LAT)}


def status(state: str, *, device: str = "case-01", camera: str = "cam0", detail: str = "") -> dict:
    return messages.status_message(device=device, camera=camera, state=state, detail=detail, ts=time.time())


def heartbeat(seqs: dict[str, int | None], *, device: str = "case-01", state: str = "up") -> dict:
    return messages.heartbeat_message(device=device, ts=time.time(), uptime_s=1.0,
                                      cameras={c: {"seq": s, "state": state, "fps": 2.0} for c, s in seqs.items()})
