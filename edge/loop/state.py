"""What the camera loop keeps per camera and per run (:mod:`edge.loop.run` drives them).

:class:`CameraState` is one camera's source, slot map, smoothing and counters; :class:`LoopResult`
is what a finished run did (tests, benchmarks and the demo read it).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.capture.sources import CameraSource
from edge.config.device import CameraConfig, DeviceConfig
from edge.loop.annotate import AnnotatedWriter
from edge.loop.collect import CameraCollector
from edge.loop.collect_store import CollectWriter
from edge.loop.model import ModelInfo
from edge.loop.postprocess import Postprocessor
from edge.loop.slot_states import SlotTracker
from edge.loop.slots import SlotMap, remap_slots

MAX_SAMPLES = 200_000     # latency samples a LoopResult keeps by default (benchmarks, tests); ~64 B each


@dataclass
class LoopResult:
    """What a finished run did (for tests, benchmarks and the demo)."""

    frames: dict[str, int] = field(default_factory=dict)
    messages: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    reconnects: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    batches: int = 0
    slot_images: int = 0
    infer_s: float = 0.0
    total_ms: list[float] = field(default_factory=list)        # latencies_ms.total, per message
    publish_ms: list[float] = field(default_factory=list)      # build + encode + send, per message
    stage_s: dict[str, float] = field(default_factory=dict)    # per stage: seconds summed over frames
    stopped_by: str = ""
    first_capture: float | None = None   # monotonic capture time of the first classified frame
    last_publish: float | None = None    # monotonic time the last labels message left
    endpoint: str = ""
    snapshot_endpoint: str | None = None
    annotated: list[Path] = field(default_factory=list)

    @property
    def steady_s(self) -> float:
        """Seconds from the first frame's capture to the last publish (set-up and tear-down excluded)."""
        if self.first_capture is None or self.last_publish is None:
            return 0.0
        return self.last_publish - self.first_capture

    def stage_ms_per_frame(self) -> dict[str, float]:
        """Mean milliseconds per published frame of each stage (:data:`edge.contracts.BREAKDOWN`)."""
        n = sum(self.frames.values()) or 1
        return {k: v * 1000.0 / n for k, v in self.stage_s.items()}


class FanOutEvent(threading.Event):
    """An event that also sets others when set: the grabbers wake both the batching thread and the
    loop's own thread (which publishes camera status) with one ``set()``."""

    def __init__(self, *others: threading.Event) -> None:
        super().__init__()
        self.others = others

    def set(self) -> None:
        super().set()
        for other in self.others:
            other.set()


class CameraState:
    """One camera of the loop: its grabber, slot map, postprocessor (smoothing) and counters.

    Args:
        cfg: the camera's config.
        model: the opened model (its manifest gives the mean colour and classes).
        config: the device config (postprocessing options).
        wake: set by the grabber on every frame and state change.
        collect_writer: the device's writer of collected crops (``None``: this camera collects nothing).
    """

    def __init__(self, cfg: CameraConfig, model: ModelInfo, config: DeviceConfig, wake: threading.Event,
                 collect_writer: CollectWriter | None = None) -> None:
        spec = model.manifest.input
        # Outside a polygon slot: the mean colour (manifest means are in RGB order), which normalises to 0.
        fill = tuple(int(round(m * 255)) for m in spec.mean[::-1])
        self.id = cfg.id
        self.cfg = cfg
        rc = cfg.reconnect
        self.source = CameraSource(cfg.id, cfg.source, credentials=cfg.credentials, fps=cfg.fps,
                                   reconnect_initial_s=rc.initial_s, reconnect_max_s=rc.max_s, stall_s=rc.stall_s,
                                   wake=wake)
        crop = self.source.spec.crop   # the source hands over only this part of the frame: slots move into it
        slot_list = cfg.slot_list() if crop is None else remap_slots(cfg.slot_list(), crop, cfg.id)
        self.slots = SlotMap(slot_list, camera=cfg.id, fill_bgr=fill)
        pp = config.postprocess
        self.post = Postprocessor(model.manifest.classes, self.slots.names, min_score=pp.min_score, window=pp.window,
                                  top_k=pp.top_k, unknown_label=pp.unknown_label, empty_label=pp.empty_label,
                                  outputs_are=model.manifest.output.kind)
        self.tracker = SlotTracker(cfg.id, self.slots, cfg.slot_list(), model.manifest, config.states,
                                   config.states.state_dir, empty_label=pp.empty_label)
        m = model.manifest
        self.collector = CameraCollector(config.device, cfg.id, self.tracker, config.collect, collect_writer,
                                         f"{m.name}@{m.version}") if collect_writer is not None else None
        self.frames = 0
        self.seen_down = False
        self.fps_mark = (time.monotonic(), 0)
        self.fps = 0.0
        self.bad_logged: set[str] = set()
        self.writer: AnnotatedWriter | None = None
        self.lock = threading.Lock()  # the batching thread and the loop's thread both count invalid frames
        self.counted = {"dropped": 0, "invalid": 0}  # what this camera's Prometheus counters hold

    def catch_up(self, name: str, counter: Any, total: int) -> None:
        """Grabber threads keep plain totals; the Prometheus counter ``name`` catches up to them."""
        with self.lock:
            if total > self.counted[name]:
                counter.inc(total - self.counted[name])
                self.counted[name] = total

    def count_invalid(self, counter: Any) -> None:
        """A frame the loop could not crop: one more in the Prometheus counter (any thread)."""
        with self.lock:
            self.counted["invalid"] += 1
            counter.inc()
