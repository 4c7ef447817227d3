"""The camera loop: grab, crop every slot, one batch for all cameras, infer, postprocess, publish.

Capture never waits for inference, and inference never waits for capture: each camera has a
grabber thread (:mod:`edge.capture.sources`) that decodes and keeps only its newest frame; a batching
thread crops the fresh frames' slots straight into a preallocated batch while the runtime works on
the previous one, on an inference thread of its own (:mod:`edge.loop.pipeline`); this thread
postprocesses and publishes one labels message per camera, and publishes camera status. Stage
latencies are measured from capture to publish (:data:`edge.contracts.STAGES`), and the per-frame
breakdown of where time goes (:data:`edge.contracts.BREAKDOWN`) goes to the metrics.

``run(config)`` is the whole thing, callable from Python (tests, benchmarks, the demo); SIGTERM and
SIGINT stop it cleanly when it runs in the main thread.
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge.capture.sources import Frame, SourceState
from edge.config.device import DeviceConfig
from edge.contracts import FrameResult
from edge.errors import InferenceError
from edge.link import messages
from edge.link.publisher import Publisher
from edge.loop import device_requests
from edge.loop.annotate import AnnotatedWriter, draw, per_camera_paths
from edge.loop.collect_store import CollectStore, CollectWriter
from edge.loop.enrolment import jpeg
from edge.loop.metrics import LoopMetrics
from edge.loop.model import ModelInfo, open_model
from edge.loop.pipeline import Batch, BatchPipeline, Span
from edge.loop.sdnotify import SdNotifier
from edge.loop.slots import as_bgr
from edge.loop.state import MAX_SAMPLES, CameraState, FanOutEvent, LoopResult

logger = logging.getLogger(__name__)

MAX_INFER_FAILURES = 10   # consecutive failed batches before the loop gives up (systemd restarts it)
TICK_S = 0.1              # the loop's longest sleep: status, heartbeats and the watchdog keep this pace


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
        self.ticked = threading.Event()           # this thread's wake: a batch finished, a camera changed
        self.wake = FanOutEvent(self.ticked)      # the grabbers' wake: the batching thread, and this one
        self.result = LoopResult()
        self.publisher: Publisher | None = None
        self.model: ModelInfo | None = None
        self.cameras: list[CameraState] = []
        self.pipeline: BatchPipeline | None = None
        self.collect_writer: CollectWriter | None = None
        self._notifier = SdNotifier()
        self._failures = 0

    def stop(self) -> None:
        """Ask the loop to finish its current frame and return (any thread, or a signal handler)."""
        self.stop_event.set()
        self.wake.set()
        self.ticked.set()

    # -- set-up and tear-down -------------------------------------------------------------------
    def _open(self) -> None:
        cfg = self.config
        self.model = open_model(cfg)
        # parse_config resolves collect.dir; a config built in code without one collects nothing.
        root = cfg.collect.dir or (cfg.states.state_dir / "collect" if cfg.states.state_dir is not None else None)
        if root is not None:
            quality = cfg.collect.jpeg_quality
            self.collect_writer = CollectWriter(CollectStore(root, cfg.collect),
                                                encode=lambda crop: jpeg(crop, quality))
            if cfg.collect.enabled or root.is_dir():
                self.collect_writer.start()   # retention runs while the device runs, collecting or not
        self.cameras = [CameraState(c, self.model, cfg, self.wake, self.collect_writer) for c in cfg.cameras]
        if self.annotate:
            paths = per_camera_paths(self.annotate, [c.id for c in self.cameras])
            for cam in self.cameras:
                cam.writer = AnnotatedWriter(paths[cam.id], fps=cam.cfg.fps or 10.0)
        pub = cfg.publish
        self.publisher = Publisher(cfg.device, pub.endpoint, pub.snapshot_endpoint, hwm=pub.hwm,
                                   heartbeat_s=pub.heartbeat_s, curve=pub.curve, insecure=self.insecure,
                                   handlers=device_requests.handlers({c.id: c.tracker for c in self.cameras},
                                                                     {c.id: c.collector for c in self.cameras}))
        self.result.endpoint = self.publisher.endpoint
        self.result.snapshot_endpoint = self.publisher.snapshot_endpoint
        if cfg.metrics.port is not None:
            self.metrics.serve(cfg.metrics.host, cfg.metrics.port)
        for cam in self.cameras:
            cam.source.start()

    def _close(self) -> None:
        if self.pipeline is not None:
            self.pipeline.stop()
        for cam in self.cameras:
            cam.source.stop()
            cam.tracker.flush()
        if self.collect_writer is not None:
            self.collect_writer.flush()
        for cam in self.cameras:
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
            runtime = self.model.runtime
            # With an embedding the runtime's every output is wanted (slot states); else its logits alone.
            infer = (lambda batch: runtime.infer({runtime.input_name: batch})) if self.model.manifest.embedding \
                else runtime
            self.pipeline = BatchPipeline(self.cameras, runtime.batch_writer(), infer,
                                          self.wake, self.ticked.set, max_frames=max_frames,
                                          on_invalid=self._invalid).start()
            while True:
                if self.stop_event.is_set():
                    self.result.stopped_by = "stop"
                    break
                self.ticked.wait(TICK_S)
                self.ticked.clear()
                self._events()
                for batch in self.pipeline.finished():
                    self._finish(batch)
                self._housekeeping()
                if self.pipeline.drained():
                    self.result.stopped_by = "eos"
                    break
                if self.pipeline.limit_reached():
                    self.result.stopped_by = "max_frames"
                    break
            # A batch already in the runtime finishes and is published; one merely prepared is dropped.
            self.pipeline.stop()
            for batch in self.pipeline.finished():
                self._finish(batch)
            if self.result.stopped_by == "max_frames":
                self._ended(f"the run ended after --max-frames {max_frames}")
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
                if state is SourceState.DOWN:
                    cam.seen_down = True
                elif state is SourceState.UP and cam.seen_down:
                    # The scene may have changed while the camera was away: start smoothing afresh.
                    cam.post.reset()
                    self.metrics.reconnects.labels(cam.id).inc()
                self.metrics.camera_up.labels(cam.id).set(1 if state is SourceState.UP else 0)
                if state in messages.STATES:  # a grabber's "starting" is no camera status
                    self.publisher.publish_status(cam.id, state, detail)
                    self.metrics.messages.labels("status").inc()
                    self.result.messages += 1

    def _ended(self, detail: str) -> None:
        """A run its operator bounded (``--max-frames``) ends as a recording played to its end does: every camera
        says ``eos``, so a kiosk shows its case ended instead of opening a camera incident once the heartbeats
        stop. A signal or a failure says nothing: a stopped device is news to the store; so is a camera down."""
        for cam in self.cameras:
            if cam.source.stats.state is SourceState.UP:   # a file that ended said so itself; a camera down stays down
                self.publisher.publish_status(cam.id, "eos", detail)
                self.metrics.messages.labels("status").inc()
                self.result.messages += 1

    def _invalid(self, cam: CameraState, exc: Exception) -> None:
        """A frame that cannot be cropped is skipped and counted (called by the batching thread)."""
        cam.count_invalid(self.metrics.invalid.labels(cam.id))
        if str(exc) not in cam.bad_logged:  # once per distinct problem, not every frame
            cam.bad_logged.add(str(exc))
            logger.warning("camera %s: frame skipped: %s", cam.id, exc)

    def _finish(self, batch: Batch) -> None:
        """Postprocess and publish each frame of a batch the runtime finished."""
        if batch.error is not None:
            self._failures += 1
            logger.error("inference failed (%d in a row): %s", self._failures, batch.error)
            if self._failures >= MAX_INFER_FAILURES:
                raise InferenceError(f"{self.model.runtime.name}: {self._failures} batches in a row failed: "
                                     f"{batch.error}") from batch.error
            return
        self._failures = 0
        self._count_batch(batch.rows, batch.t_out - batch.t_in)
        for span in batch.spans:
            emb = batch.embeddings[span.first:span.stop] if batch.embeddings is not None else None
            self._publish_frame(span, batch.logits[span.first:span.stop], batch, emb)

    def _count_batch(self, n_images: int, infer_s: float) -> None:
        self.result.batches += 1
        self.result.slot_images += n_images
        self.result.infer_s += infer_s
        self.metrics.batch.set(n_images)

    def _publish_frame(self, span: Span, logits: np.ndarray, batch: Batch, embeddings: np.ndarray | None) -> None:
        """Postprocess one frame's logits and embeddings (slot states) and publish its labels message (with
        its stage latencies)."""
        cam, frame = span.camera, span.frame
        tp = time.monotonic()
        result = cam.post.update(logits)
        t_media = frame.media_s if frame.media_s is not None else frame.t_mono
        # A slot the model is unsure of reads as its most likely class here: empty or a piece is what decides
        # between a missing piece and another one (the published label stays ``unknown``).
        readings = [s.topk[0][0] if s.label == cam.post.unknown_label and s.topk else s.label for s in result.slots]
        crops = cam.slots.crop(frame.image)
        states = cam.tracker.update(t_media, frame.capture_ts, frame.image, crops, embeddings, readings)
        if cam.collector is not None:
            cam.collector.offer(t_media, frame.capture_ts, crops, embeddings, states)
        t3 = time.monotonic()
        # infer includes any wait for the runtime to finish the batch before this one; total ends
        # where publishing starts (the meaning of latencies_ms.total, see edge.contracts.STAGES).
        stages = {"capture": batch.t0 - frame.t_mono, "preprocess": batch.t1 - batch.t0,
                  "infer": batch.t_out - batch.t1, "postprocess": t3 - tp, "total": t3 - frame.t_mono}
        msg = messages.labels_message(device=self.config.device, camera=cam.id, capture_ts=frame.capture_ts,
                                      model=self.model.info, result=result,
                                      latencies_ms={k: v * 1000.0 for k, v in stages.items()},
                                      frame_index=frame.index, states=states, enrolment=cam.tracker.summary())
        t_built = time.monotonic()
        self.publisher.publish_labels(cam.id, msg)
        t4 = time.monotonic()
        stages["publish"] = t4 - t3
        encode_s, send_s = self.publisher.last_timing
        breakdown = {"decode": frame.decode_s, "crop": span.crop_s, "preprocess": span.preprocess_s,
                     "infer": batch.t_out - batch.t_in, "postprocess": t3 - tp,
                     "encode": t_built - t3 + encode_s, "send": send_s}
        self._record(cam, frame, stages, breakdown, t4)
        if cam.writer is not None:
            self._annotate(cam, frame, result)

    def _record(self, cam: CameraState, frame: Frame, stages: dict[str, float], breakdown: dict[str, float],
                published: float) -> None:
        """One published frame in the metrics and the run's result."""
        if self.result.first_capture is None:
            self.result.first_capture = frame.t_mono
        self.result.last_publish = published
        self.metrics.observe_stages(stages)
        self.metrics.observe_breakdown(breakdown)
        for k, v in breakdown.items():
            self.result.stage_s[k] = self.result.stage_s.get(k, 0.0) + v
        self.metrics.frames.labels(cam.id).inc()
        self.metrics.messages.labels("labels").inc()
        self.result.messages += 1
        if len(self.result.total_ms) < self.samples:
            self.result.total_ms.append(stages["total"] * 1000.0)
            self.result.publish_ms.append(stages["publish"] * 1000.0)
        cam.frames += 1

    def _annotate(self, cam: CameraState, frame: Frame, result: FrameResult) -> None:
        h, w = frame.image.shape[:2]
        pp = self.config.postprocess
        cam.writer.write(draw(as_bgr(frame.image, cam.id), cam.slots.rects(w, h), result,
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




def run(config: DeviceConfig, *, max_frames: int | None = None, annotate: str | Path | None = None,
        on_ready: Callable[[CameraLoop], None] | None = None, metrics: LoopMetrics | None = None,
        insecure: bool = False, samples: int = MAX_SAMPLES) -> LoopResult:
    """Run the camera loop for ``config`` (see :class:`CameraLoop`).

    Args:
        config: the validated device config (:func:`edge.config.device.load_config`).
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
