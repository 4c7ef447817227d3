"""Prometheus metrics of the camera loop, served on localhost.

Each :class:`LoopMetrics` owns its ``CollectorRegistry`` (never the global one), so tests and
benchmarks can create several in one process.
"""
from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from edge.errors import ConfigError

logger = logging.getLogger(__name__)

# Stage latencies on an edge CPU run from well under a millisecond (postprocess) to ~1 s (a slow
# backend on a big batch): buckets in seconds, roughly doubling.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
# The breakdown's stages start at tens of microseconds (encode, send): finer buckets at the bottom.
BREAKDOWN_BUCKETS = (0.00005, 0.0001, 0.0002, 0.0005, *LATENCY_BUCKETS)


class LoopMetrics:
    """The loop's counters, gauges and histograms in a private registry.

    Args:
        registry: registry to register into (a new one by default).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.frames = Counter("gemsight_frames", "Frames classified, per camera.", ["camera"], registry=r)
        self.fps = Gauge("gemsight_fps", "Frames classified per second over the last seconds, per camera.",
                         ["camera"], registry=r)
        self.dropped = Counter("gemsight_dropped_frames", "Frames the grabber replaced by a newer one before "
                               "the loop took them.", ["camera"], registry=r)
        self.invalid = Counter("gemsight_invalid_frames", "Substituted (all-black) or unconvertible frames "
                               "never classified.", ["camera"], registry=r)
        self.reconnects = Counter("gemsight_reconnects", "Times a camera was reopened after a failure.",
                                  ["camera"], registry=r)
        self.camera_up = Gauge("gemsight_camera_up", "1 while a camera delivers frames, else 0.", ["camera"],
                               registry=r)
        self.messages = Counter("gemsight_messages_published", "ZeroMQ messages sent, per kind.", ["kind"],
                                registry=r)
        self.latency = Histogram("gemsight_stage_latency_seconds", "Latency of each loop stage; 'total' is "
                                 "capture to labels ready to publish, 'publish' follows it.", ["stage"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.breakdown = Histogram("gemsight_frame_stage_seconds", "Where a frame's time goes, stage by stage: "
                                   "decode (the grabber's read), crop and preprocess (this frame's slots), "
                                   "infer (its batch's runtime call), postprocess, encode (build + JSON) and "
                                   "send (ZeroMQ). Decode, crop and preprocess run beside inference, on their "
                                   "own threads.", ["stage"], buckets=BREAKDOWN_BUCKETS, registry=r)
        self.batch = Gauge("gemsight_batch_size", "Slot images in the last inference batch.", registry=r)
        self._server: Any = None
        self._thread: Any = None
        self.port: int | None = None

    def observe_stages(self, seconds: dict[str, float]) -> None:
        """Record one frame's stage latencies (seconds; stage names: :data:`edge.contracts.STAGES`)."""
        for stage, value in seconds.items():
            self.latency.labels(stage).observe(value)

    def observe_breakdown(self, seconds: dict[str, float]) -> None:
        """Record one frame's breakdown (seconds; stage names: :data:`edge.contracts.BREAKDOWN`)."""
        for stage, value in seconds.items():
            self.breakdown.labels(stage).observe(max(0.0, value))

    def breakdown_ms(self) -> dict[str, float]:
        """Mean milliseconds per frame of each breakdown stage so far (from the histogram's sums)."""
        out: dict[str, float] = {}
        for metric in self.breakdown.collect():
            sums = {s.labels["stage"]: s.value for s in metric.samples if s.name.endswith("_sum")}
            counts = {s.labels["stage"]: s.value for s in metric.samples if s.name.endswith("_count")}
            out = {k: 1000.0 * v / counts[k] for k, v in sums.items() if counts.get(k)}
        return out

    def serve(self, host: str = "127.0.0.1", port: int = 9108) -> int:
        """Start the HTTP exporter; returns the bound port (``port=0`` picks a free one).

        Raises:
            ConfigError: the address cannot be bound (names host and port).
        """
        try:
            result = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise ConfigError(f"metrics: cannot listen on {host}:{port} ({exc.strerror or exc})") from exc
        # prometheus_client >= 0.17 returns (server, thread).
        if isinstance(result, tuple):
            self._server, self._thread = result
            self.port = int(self._server.server_port)
        else:  # pragma: no cover - older clients return nothing
            self.port = port
        logger.info("metrics on http://%s:%d/metrics", host, self.port)
        return self.port

    def close(self) -> None:
        """Stop the exporter, if one runs."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
