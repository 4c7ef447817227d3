"""The loop keeps the runtime busy: decode and preprocessing overlap inference, frames never queue
behind older ones, the batch buffers are preallocated and reused, and every stage is measured.

A slow runtime here is a plain class around the real ONNX Runtime one (it sleeps before each batch);
the videos, grabbers, threads and sockets are the loop's own.
"""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from prometheus_client import generate_latest

from edge.config.device import parse_config
from edge.contracts import BREAKDOWN
from edge.errors import DataError
from edge.loop.run import CameraLoop
from edge.manifest import InputSpec
from edge.preprocess import BatchWriter, normalize, preprocess_batch, resize_to
from tests.helpers import device_config, loopback_publish, write_video

SLOTS = [{"name": "a", "rect": [0, 0, 0.5, 0.5]}, {"name": "b", "rect": [0.5, 0, 1, 0.5]},
         {"name": "c", "rect": [0, 0.5, 1, 1]}]


class SlowRuntime:
    """The runtime interface (callable on a batch, ``name``, ``batch_writer``, ``close``) around a real runtime, slower
    by ``delay_s`` per batch, recording when each batch ran and which memory it was given."""

    def __init__(self, inner, delay_s: float) -> None:
        self.inner = inner
        self.name = inner.name
        self.batch_writer = inner.batch_writer
        self.delay_s = delay_s
        self.calls: list[tuple[float, float, int, int]] = []   # t_in, t_out, data pointer, rows
        self.lock = threading.Lock()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        t_in = time.monotonic()
        time.sleep(self.delay_s)
        out = self.inner(batch)
        with self.lock:
            self.calls.append((t_in, time.monotonic(), batch.__array_interface__["data"][0], len(batch)))
        return out

    def close(self) -> None:
        self.inner.close()


def _loop(model, tmp_path, query: str, fps: float, delay_s: float, frames: int = 30, **cam) -> tuple[CameraLoop, list]:
    video = write_video(tmp_path / "v.avi", frames=frames, fps=fps)
    camera = {"id": "cam0", "source": f"file://{video}?{query}", "slots": SLOTS, **cam}
    config = parse_config(device_config(model, [camera], device="dev1", metrics={"port": None},
                                        publish=loopback_publish(snapshot_endpoint=None)), "test.yaml")
    slow: list[SlowRuntime] = []

    def wrap(loop: CameraLoop) -> None:
        slow.append(SlowRuntime(loop.model.runtime, delay_s))
        loop.model.runtime = slow[0]

    return CameraLoop(config, on_ready=wrap), slow


def test_decode_and_preprocess_overlap_inference_in_two_reused_buffers(untrained_onnx, tmp_path):
    loop, slow = _loop(untrained_onnx, tmp_path, "realtime=0", fps=10.0, delay_s=0.04, frames=12)
    result = loop.run()
    assert result.stopped_by == "eos" and result.frames == {"cam0": 12}
    calls, runs = slow[0].calls, list(loop.pipeline.stats.runs)
    assert len(calls) == len(runs) >= 6
    # Batch k+1 was being prepared, and its frame already decoded, while batch k was in the runtime.
    prepared = sum(runs[k + 1][0] < runs[k][2] for k in range(len(runs) - 1))
    decoded = sum(runs[k + 1][3] < runs[k][2] for k in range(len(runs) - 1))
    assert prepared >= (len(runs) - 1) // 2 and decoded >= (len(runs) - 1) // 2
    # The runtime was handed rows of the two buffers allocated at start, never a new array.
    assert len(loop.pipeline.stats.buffers) == 2
    assert len({ptr for _, _, ptr, _ in calls}) == 2 and {rows for *_, rows in calls} == {3}
    # The per-frame breakdown is in the result and in the metrics, never negative.
    per_frame = result.stage_ms_per_frame()
    assert set(per_frame) == set(BREAKDOWN) and all(v >= 0 for v in per_frame.values())
    assert per_frame["infer"] >= 40.0  # the slow runtime's sleep is in it
    served = loop.metrics.breakdown_ms()
    assert set(served) == set(BREAKDOWN) and all(v >= 0 for v in served.values())
    text = generate_latest(loop.metrics.registry).decode()
    assert all(f'gemsight_frame_stage_seconds_count{{stage="{s}"}} 12.0' in text for s in BREAKDOWN)


def test_frames_never_queue_behind_older_ones(untrained_onnx, tmp_path):
    # A 30 fps camera and a runtime that takes 0.15 s a batch: the grabber must drop frames (newest
    # only), and a frame waits for at most the one batch already in the runtime.
    loop, slow = _loop(untrained_onnx, tmp_path, "realtime=1", fps=30.0, delay_s=0.15, frames=60)
    result = loop.run(max_frames=6)
    assert result.stopped_by == "max_frames" and result.frames == {"cam0": 6}
    assert result.dropped["cam0"] > 0
    starts = [t_in for t_in, *_ in slow[0].calls]
    for _, t_in, _, captured in loop.pipeline.stats.runs:
        ahead = [s for s in starts if captured < s < t_in]
        assert len(ahead) <= 1, f"a frame waited behind {len(ahead)} batches"


def test_preprocessing_into_a_buffer_is_bit_identical_to_normalize():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (int(rng.integers(20, 90)), int(rng.integers(20, 90)), 3), dtype=np.uint8)
              for _ in range(4)]
    for color in ("RGB", "BGR"):
        for rule in ("stretch", "letterbox", "shorter_center_crop"):
            spec = InputSpec(size=(32, 40), color=color, resize=rule)
            buffer = BatchWriter(spec).allocate(6)
            got = preprocess_batch(images, spec, out=buffer)
            assert np.shares_memory(got, buffer) and got.shape == (4, 3, 32, 40)
            want = normalize(np.stack([resize_to(i, spec) for i in images]), spec)
            assert np.array_equal(got, want), (color, rule)
            # For a runtime that normalises inside its model: the resized crops themselves, in place.
            raw_buffer = BatchWriter(spec, uint8=True).allocate(6)
            raw = preprocess_batch(images, spec, out=raw_buffer, uint8=True)
            assert np.shares_memory(raw, raw_buffer) and raw.shape == (4, 32, 40, 3) and raw.dtype == np.uint8
            assert np.array_equal(raw, np.stack([resize_to(i, spec) for i in images])), (color, rule)
            assert np.array_equal(normalize(raw, spec), want)


def test_preprocessing_refuses_an_empty_crop_by_its_row():
    spec = InputSpec(size=(16, 16))
    writer = BatchWriter(spec)
    with pytest.raises(DataError, match="preprocess: image 2 is empty"):
        writer.write(writer.allocate(3), np.zeros((0, 5, 3), np.uint8), 2)


def test_preprocessing_refuses_a_buffer_it_cannot_fill():
    spec = InputSpec(size=(16, 16))
    images = [np.zeros((20, 20, 3), np.uint8)] * 3
    with pytest.raises(DataError, match=r"output buffer is float32 \(2, 3, 16, 16\); 3 images need"):
        preprocess_batch(images, spec, out=np.empty((2, 3, 16, 16), np.float32))
    with pytest.raises(DataError, match=r"\(not contiguous\)"):
        preprocess_batch(images, spec, out=np.empty((3, 3, 16, 32), np.float32)[..., ::2])
    with pytest.raises(DataError, match=r"output buffer is float32 \(3, 3, 16, 16\); 3 images need a contiguous "
                                        r"uint8 buffer of at least 3 x 16 x 16 x 3"):
        preprocess_batch(images, spec, out=np.empty((3, 3, 16, 16), np.float32), uint8=True)
