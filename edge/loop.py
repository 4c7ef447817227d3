"""The camera loop: grab, crop every slot, one batch for all cameras, infer, postprocess, publish.

Capture never waits for inference: each camera has a grabber thread (:mod:`edge.sources`) that keeps
only its newest frame. Each turn the loop takes the fresh frames of every camera, crops their slots
into one batch preprocessed by the manifest's rule, runs it through the one runtime, and publishes
one labels message per camera. Stage latencies are measured from capture to publish
(:data:`edge.contracts.STAGES` says what each means).

``run(config)`` is the whole thing, callable from Python (tests, benchmarks, the demo); SIGTERM and
SIGINT stop it cleanly when it runs in the main thread.
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge import messages
from edge.annotate import AnnotatedWriter, draw, per_camera_paths
from edge.config import CameraConfig, DeviceConfig
from edge.errors import ConfigError, DataError, InferenceError
from edge.metrics import LoopMetrics
from edge.model_loader import ModelInfo, open_model
from edge.postprocess import FrameResult, Postprocessor
from edge.preprocess import preprocess_batch
from edge.publisher import Publisher
from edge.sdnotify import SdNotifier
from edge.slots import SlotMap
from edge.sources import CameraSource, Frame, Status

logger = logging.getLogger(__name__)

MAX_INFER_FAILURES = 10   # consecutive failed batches before the loop gives up (systemd restarts it)
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


@dataclass
class _Batch:
    """Slot images of the frames taken in one turn, on their way through the runtime."""

    batch: np.ndarray
    spans: list[tuple["_Camera", Frame, int, int]]  # camera, frame, first and last+1 row in the batch
    t0: float   # preprocessing started
    t1: float   # preprocessing done
    future: Future | None = None

    @property
    def frames(self) -> int:
        return len(self.spans)


class _Camera:
    def __init__(self, cfg: CameraConfig, model: ModelInfo, config: DeviceConfig, wake: threading.Event) -> None:
        spec = model.manifest.input
        # Outside a polygon slot: the mean colour (manifest means are in RGB order), which normalises to 0.
        fill = tuple(int(round(m * 255)) for m in spec.mean[::-1])
        self.id = cfg.id
        self.cfg = cfg
        self.slots = SlotMap(cfg.slot_list(), camera=cfg.id, fill_bgr=fill)
        pp = config.postprocess
        self.post = Postprocessor(model.manifest.classes, self.slots.names, min_score=pp.min_score, window=pp.window,
                                  top_k=pp.top_k, unknown_label=pp.unknown_label, empty_label=pp.empty_label,
                                  outputs_are=model.manifest.output.kind)
        rc = cfg.reconnect
        self.source = CameraSource(cfg.id, cfg.source, credentials=cfg.credentials, fps=cfg.fps,
                                   reconnect_initial_s=rc.initial_s, reconnect_max_s=rc.max_s, stall_s=rc.stall_s,
                                   wake=wake)
        self.frames = 0
        self.seen_down = False
        self.fps_mark = (time.monotonic(), 0)
        self.fps = 0.0
        self.bad_logged: set[str] = set()
        self.writer: AnnotatedWriter | None = None
        self.counted = {"dropped": 0, "invalid": 0}  # what this camera's Prometheus counters hold

    def catch_up(self, name: str, counter: Any, total: int) -> None:
        """Grabber threads keep plain totals; the Prometheus counter ``name`` catches up to them."""
        if total > self.counted[name]:
            counter.inc(total - self.counted[name])
            self.counted[name] = total


class CameraLoop:
    """One device's loop; :meth:`run` until EOS of every camera, ``max_frames``, or :meth:`stop`.

    Args:
        config: the validated device config.
        annotate: write annotated video here (``OUT.mp4``, ``OUT-<camera>.mp4`` for several cameras).
        on_ready: called with this loop once everything is open, before the first frame (tests use
            it to connect subscribers to the bound endpoints).
        metrics: metrics to record into (a fresh :class:`LoopMetrics` by default).
        insecure: allow ``publish.curve: null`` on a non-loopback endpoint (``run --insecure``).
        samples: how many latency samples the result keeps (``total_ms``, ``publish_ms``: benchmarks
            and tests read them). A device keeps none: ``gemsight-edge run`` passes 0, or its RSS
            would grow by ~2.3 MB an hour at 10 fps until the cap (bench/soak.py saw it).
    """

    def __init__(self, config: DeviceConfig, *, annotate: str | Path | None = None,
                 on_ready: Callable[["CameraLoop"], None] | None = None, metrics: LoopMetrics | None = None,
                 insecure: bool = False, samples: int = MAX_SAMPLES) -> None:
        self.config = config
        self.insecure = insecure
        self.samples = samples
        self.annotate = annotate
        self.on_ready = on_ready
        self.metrics = metrics or LoopMetrics()
        self.stop_event = threading.Event()
        self.wake = threading.Event()
        self.result = LoopResult()
        self.publisher: Publisher | None = None
        self.model: ModelInfo | None = None
        self.cameras: list[_Camera] = []
        self._notifier = SdNotifier()
        self._failures = 0
        # The runtime runs in one worker thread so the next frames are preprocessed meanwhile.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="infer")

    def stop(self) -> None:
        """Ask the loop to finish its current frame and return (any thread, or a signal handler)."""
        self.stop_event.set()
        self.wake.set()

    # -- set-up and tear-down -------------------------------------------------------------------
    def _open(self) -> None:
        cfg = self.config
        self.model = open_model(cfg)
        self.cameras = [_Camera(c, self.model, cfg, self.wake) for c in cfg.cameras]
        if self.annotate:
            paths = per_camera_paths(self.annotate, [c.id for c in self.cameras])
            for cam in self.cameras:
                cam.writer = AnnotatedWriter(paths[cam.id], fps=cam.cfg.fps or 10.0)
        pub = cfg.publish
        self.publisher = Publisher(cfg.device, pub.endpoint, pub.snapshot_endpoint, hwm=pub.hwm,
                                   heartbeat_s=pub.heartbeat_s, curve=pub.curve, insecure=self.insecure)
        self.result.endpoint = self.publisher.endpoint
        self.result.snapshot_endpoint = self.publisher.snapshot_endpoint
        if cfg.metrics.port is not None:
            self.metrics.serve(cfg.metrics.host, cfg.metrics.port)
        for cam in self.cameras:
            cam.source.start()

    def _close(self) -> None:
        self._executor.shutdown(wait=True)
        for cam in self.cameras:
            cam.source.stop()
            if cam.writer is not None:
                cam.writer.close()
                if cam.writer.frames:
                    self.result.annotated.append(cam.writer.path)
        self._notifier.stopping()
        self._notifier.close()
        if self.publisher is not None:
            self.publisher.close()
        self.metrics.close()
        if self.model is not None:
            self.model.runtime.close()

    # -- the loop -------------------------------------------------------------------------------
    def run(self, max_frames: int | None = None) -> LoopResult:
        """Run until every camera reached EOS, ``max_frames`` frames (all cameras together) were
        classified, or :meth:`stop` / SIGTERM / SIGINT.

        Raises:
            GemsightError: set-up failed (config, model, endpoints) or inference kept failing.
        """
        restore = self._install_signals()
        t_start = time.monotonic()
        try:
            self._open()
            if self.on_ready is not None:
                self.on_ready(self)
            self._notifier.ready(f"running {len(self.cameras)} camera(s) with {self.model.info['backend']}")
            total = 0
            pending: _Batch | None = None
            while True:
                if self.stop_event.is_set():
                    self.result.stopped_by = "stop"
                    break
                if pending is None:  # with a batch in flight there is no time to sleep
                    self.wake.wait(0.25)
                    self.wake.clear()
                room = None if max_frames is None else max_frames - total - (pending.frames if pending else 0)
                fresh, ended = self._take(room)
                self._events()
                # Preprocess the next frames while the runtime works on the previous batch.
                ready = self._prepare(fresh) if fresh else None
                if pending is not None:
                    total += self._finish(pending)
                    pending = None
                if ready is not None:
                    pending = self._submit(ready)
                self._housekeeping()
                if pending is None and ended == len(self.cameras):
                    self.result.stopped_by = "eos"
                    break
                if pending is None and max_frames is not None and total >= max_frames:
                    self.result.stopped_by = "max_frames"
                    break
            if pending is not None:
                total += self._finish(pending)
        finally:
            self._close()
            for sig, handler in restore.items():
                signal.signal(sig, handler)
            self.result.elapsed_s = time.monotonic() - t_start
            for cam in self.cameras:
                self.result.frames[cam.id] = cam.frames
                self.result.dropped[cam.id] = cam.source.stats.dropped
                self.result.reconnects[cam.id] = cam.source.stats.reconnects
        logger.info("loop stopped (%s) after %.1fs: %s", self.result.stopped_by, self.result.elapsed_s,
                    ", ".join(f"{k} {v} frames" for k, v in self.result.frames.items()))
        return self.result

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        restore = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            restore[sig] = signal.signal(sig, lambda signum, _frame: self._on_signal(signum))
        return restore

    def _on_signal(self, signum: int) -> None:
        logger.info("signal %s: stopping", signal.Signals(signum).name)
        self.stop()

    def _events(self) -> None:
        """Camera up/down/eos changes become status messages (published from this thread only)."""
        for cam in self.cameras:
            for state, detail in cam.source.pop_events():
                if state == "down":
                    cam.seen_down = True
                elif state == "up" and cam.seen_down:
                    # The scene may have changed while the camera was away: start smoothing afresh.
                    cam.post.reset()
                    self.metrics.reconnects.labels(cam.id).inc()
                self.metrics.camera_up.labels(cam.id).set(1 if state == "up" else 0)
                if state in messages.STATES:  # a grabber's "starting" is no camera status
                    self.publisher.publish_status(cam.id, state, detail)
                    self.metrics.messages.labels("status").inc()
                    self.result.messages += 1

    def _take(self, room: int | None) -> tuple[list[tuple[_Camera, Frame]], int]:
        """Fresh frames of every camera (at most ``room``), and how many cameras reached EOS."""
        fresh: list[tuple[_Camera, Frame]] = []
        ended = 0
        for cam in self.cameras:
            if room is not None and len(fresh) >= room:
                break
            status, frame = cam.source.read(0.0)
            if status is Status.OK and frame is not None:
                fresh.append((cam, frame))
            ended += status is Status.EOS  # EOS only once its last frame was taken
        return fresh, ended

    def _prepare(self, fresh: list[tuple[_Camera, Frame]]) -> "_Batch | None":
        """Crop every slot of every fresh frame into one preprocessed batch."""
        t0 = time.monotonic()
        crops: list[np.ndarray] = []
        spans: list[tuple[_Camera, Frame, int, int]] = []
        for cam, frame in fresh:
            try:
                cam_crops = cam.slots.crop(frame.image)
            except (DataError, ConfigError) as exc:
                cam.counted["invalid"] += 1
                self.metrics.invalid.labels(cam.id).inc()
                if str(exc) not in cam.bad_logged:  # once per distinct problem, not every frame
                    cam.bad_logged.add(str(exc))
                    logger.warning("camera %s: frame skipped: %s", cam.id, exc)
                continue
            spans.append((cam, frame, len(crops), len(crops) + len(cam_crops)))
            crops.extend(cam_crops)
        if not crops:
            return None
        batch = preprocess_batch(crops, self.model.manifest.input)
        return _Batch(batch, spans, t0, time.monotonic())

    def _submit(self, batch: "_Batch") -> "_Batch":
        runtime = self.model.runtime

        def infer() -> tuple[np.ndarray, float, float]:
            t1 = time.monotonic()
            return runtime(batch.batch), t1, time.monotonic()

        batch.future = self._executor.submit(infer)
        return batch

    def _finish(self, pending: "_Batch") -> int:
        """Wait for a batch's logits, then postprocess and publish each of its frames."""
        done = self._logits(pending)
        if done is None:
            return 0
        logits, t_in, t2 = done
        self._count_batch(len(pending.batch), t2 - t_in)
        for cam, frame, a, b in pending.spans:
            self._publish_frame(cam, frame, logits[a:b], pending, t2)
        return len(pending.spans)

    def _logits(self, pending: "_Batch") -> tuple[np.ndarray, float, float] | None:
        """The batch's logits with inference start and end times; ``None`` for a failed batch."""
        try:
            done = pending.future.result()
        except Exception as exc:  # backends raise their own types; one bad batch must not stop the device
            self._failures += 1
            logger.error("inference failed (%d in a row): %s", self._failures, exc)
            if self._failures >= MAX_INFER_FAILURES:
                raise InferenceError(f"{self.model.runtime.name}: {self._failures} batches in a row failed: "
                                     f"{exc}") from exc
            return None
        self._failures = 0
        return done

    def _count_batch(self, n_images: int, infer_s: float) -> None:
        self.result.batches += 1
        self.result.slot_images += n_images
        self.result.infer_s += infer_s
        self.metrics.batch.set(n_images)

    def _publish_frame(self, cam: _Camera, frame: Frame, logits: np.ndarray, pending: "_Batch", t2: float) -> None:
        """Postprocess one frame's logits and publish its labels message (with its stage latencies)."""
        tp = time.monotonic()
        result = cam.post.update(logits)
        t3 = time.monotonic()
        # infer includes any wait for the runtime to finish the batch before this one; total ends
        # where publishing starts (the meaning of latencies_ms.total, see edge.contracts.STAGES).
        stages = {"capture": pending.t0 - frame.t_mono, "preprocess": pending.t1 - pending.t0,
                  "infer": t2 - pending.t1, "postprocess": t3 - tp, "total": t3 - frame.t_mono}
        msg = messages.labels_message(device=self.config.device, camera=cam.id, capture_ts=frame.capture_ts,
                                      model=self.model.info, result=result,
                                      latencies_ms={k: v * 1000.0 for k, v in stages.items()},
                                      frame_index=frame.index)
        self.publisher.publish_labels(cam.id, msg)
        t4 = time.monotonic()
        stages["publish"] = t4 - t3
        self._record(cam, frame, stages, t4)
        if cam.writer is not None:
            self._annotate(cam, frame, result)

    def _record(self, cam: _Camera, frame: Frame, stages: dict[str, float], published: float) -> None:
        """One published frame in the metrics and the run's result."""
        if self.result.first_capture is None:
            self.result.first_capture = frame.t_mono
        self.result.last_publish = published
        self.metrics.observe_stages(stages)
        self.metrics.frames.labels(cam.id).inc()
        self.metrics.messages.labels("labels").inc()
        self.result.messages += 1
        if len(self.result.total_ms) < self.samples:
            self.result.total_ms.append(stages["total"] * 1000.0)
            self.result.publish_ms.append(stages["publish"] * 1000.0)
        cam.frames += 1

    def _annotate(self, cam: _Camera, frame: Frame, result: FrameResult) -> None:
        h, w = frame.image.shape[:2]
        pp = self.config.postprocess
        cam.writer.write(draw(_bgr(frame.image, cam.id), cam.slots.rects(w, h), result,
                              title=f"{cam.id} #{frame.index}", unknown_label=pp.unknown_label,
                              empty_label=pp.empty_label))

    def _housekeeping(self) -> None:
        now = time.monotonic()
        cams: dict[str, dict[str, Any]] = {}
        for cam in self.cameras:
            t_mark, n_mark = cam.fps_mark
            if now - t_mark >= 1.0:
                cam.fps = (cam.frames - n_mark) / (now - t_mark)
                cam.fps_mark = (now, cam.frames)
                self.metrics.fps.labels(cam.id).set(cam.fps)
                st = cam.source.stats
                cam.catch_up("dropped", self.metrics.dropped.labels(cam.id), st.dropped)
                cam.catch_up("invalid", self.metrics.invalid.labels(cam.id), st.invalid)
            cams[cam.id] = {"fps": round(cam.fps, 2), "dropped": cam.source.stats.dropped,
                            "reconnects": cam.source.stats.reconnects}
        if self.publisher.maybe_heartbeat(cams):
            self.metrics.messages.labels("heartbeat").inc()
            self._notifier.status("; ".join(f"{c.id} {c.source.state} {c.fps:.1f} fps" for c in self.cameras))
        self._notifier.maybe_watchdog(now)


def _bgr(image: np.ndarray, camera: str) -> np.ndarray:
    from edge.slots import as_bgr  # noqa: PLC0415

    return as_bgr(image, camera)


def run(config: DeviceConfig, *, max_frames: int | None = None, annotate: str | Path | None = None,
        on_ready: Callable[[CameraLoop], None] | None = None, metrics: LoopMetrics | None = None,
        insecure: bool = False, samples: int = MAX_SAMPLES) -> LoopResult:
    """Run the camera loop for ``config`` (see :class:`CameraLoop`).

    Args:
        config: the validated device config (:func:`edge.config.load_config`).
        max_frames: stop after this many frames, all cameras together (``None``: until EOS or a signal).
        annotate: write annotated video to this ``.mp4``.
        on_ready: called with the loop once sockets are bound and cameras started.
        metrics: a :class:`LoopMetrics` to record into.
        insecure: allow plaintext (``publish.curve: null``) on a non-loopback endpoint.
        samples: latency samples to keep in the result (0 on a device).

    Raises:
        GemsightError: set-up failed, or inference failed repeatedly.
    """
    return CameraLoop(config, annotate=annotate, on_ready=on_ready, metrics=metrics, insecure=insecure,
                      samples=samples).run(max_frames)


__all__ = ["CameraLoop", "LoopResult", "run"]
