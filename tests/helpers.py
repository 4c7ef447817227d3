"""Helpers shared by test modules and benchmarks: real video files and an MJPEG camera, a ZeroMQ subscriber
for the camera loop, builders of device configs, labels messages and YAML files, tiny training recipes and
class folders of simple photos.

Fixtures stay in the ``conftest.py`` files; what a test module or a bench imports from another lives here.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import yaml

from edge.contracts import DEFAULT_CLASSES
from edge.link import messages
from edge.link.listen import Listener
from edge.loop.postprocess import Postprocessor

if TYPE_CHECKING:
    from edge.loop.run import CameraLoop

#: Bind to a random free loopback port (ZeroMQ picks it; read the socket's endpoint back).
ANY = "tcp://127.0.0.1:*"

#: A 2-epoch ResNet-18 at 32 px on the tiny 3-class set (``tests/trainer/conftest.py``), one process, on
#: the seed recipe (its models do not move when the default recipe does).
TINY_RECIPE = {"recipe": "seed", "arch": "resnet18", "weights": "none", "img_size": 32, "epochs": 2, "batch_size": 8,
               "workers": 0, "seed": 0}

#: The model that built labels messages name.
MODEL = {"name": "m", "version": "1.0.0", "precision": "int8", "backend": "onnxruntime"}
_LATENCIES = {"capture": 1.0, "preprocess": 2.0, "infer": 3.0, "postprocess": 0.1}


# -- video files and cameras ---------------------------------------------------------------------------


def write_video(path: Path, frames: int = 20, size: tuple[int, int] = (160, 120), fps: float = 10.0,
                channels_seed: int = 0) -> Path:
    """An MJPEG ``.avi`` whose frame i has mean brightness 40 + 8 * (i % 25) (never all black)."""
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened()
    rng = np.random.default_rng(channels_seed)
    base = rng.integers(0, 30, (h, w, 3), dtype=np.uint8)
    for i in range(frames):
        img = base + np.uint8(40 + 8 * (i % 25))
        cv2.putText(img, str(i), (5, h - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2)
        writer.write(img)
    writer.release()
    return path


class MjpegServer:
    """An MJPEG-over-HTTP camera on loopback (what many IP cameras serve), read by OpenCV's FFmpeg.

    ``stop()`` closes the listening socket and every connection (the camera vanishes); ``start()``
    again on the same port brings it back; ``paused`` keeps connections open but sends nothing (a stall).
    """

    def __init__(self, size: tuple[int, int] = (160, 120), fps: float = 30.0, frames: list | None = None) -> None:
        self.size, self.fps = size, fps
        # Pre-encoded JPEGs of real frames (cycled), or generated grey levels.
        self.jpegs = [cv2.imencode(".jpg", f)[1].tobytes() for f in frames] if frames else None
        self.port = 0
        self.paused = False
        self._server = None
        self._thread = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def start(self) -> "MjpegServer":
        import threading
        import time
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                w, h = owner.size
                try:
                    while not self.server.stopping:
                        if owner.paused:
                            time.sleep(0.02)
                            continue
                        if owner.jpegs:
                            buf = owner.jpegs[i % len(owner.jpegs)]
                        else:
                            buf = cv2.imencode(".jpg", np.full((h, w, 3), 60 + (i * 5) % 150, np.uint8))[1].tobytes()
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                                         % len(buf) + buf + b"\r\n")
                        i += 1
                        time.sleep(1.0 / owner.fps)
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        server.stopping = False
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stopping = True
            self._server.shutdown()
            self._server.server_close()
            self._server = None
            self._thread.join(5)


# -- ZeroMQ: the camera loop's messages ------------------------------------------------------------------

class Subscriber:
    """A Listener connected from the loop's on_ready hook, in sync before the first frame.

    Plaintext (the loop tests' configs say ``curve: null`` on loopback) unless CURVE ``keys`` are given.
    """

    def __init__(self, keys=None):
        self.listener = None
        self.keys = keys

    def __call__(self, loop: CameraLoop):
        self.listener = Listener(loop.publisher.endpoint, snapshot_endpoint=loop.publisher.snapshot_endpoint,
                                 keys=self.keys, plaintext=self.keys is None)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # ZeroMQ's slow joiner: wait until a heartbeat arrives
            loop.publisher.send_heartbeat({})
            if self.listener.recv(0.05) is not None:
                return
        raise AssertionError("subscriber never got in sync")

    def drain(self, close: bool = True):
        events = []
        while (ev := self.listener.recv(0.5)) is not None:
            events.append(ev)
        if close:
            self.listener.close()
        return events


@dataclass(frozen=True)
class CurveFiles:
    """A device's CURVE key pair, its allow-list with one client (``kiosk-1``), and a stranger's key pair."""

    server_public: Path
    server_secret: Path
    allowed_clients: Path
    client_public: Path
    client_secret: Path
    stranger_secret: Path

    @property
    def config(self) -> dict:
        """``publish.curve`` for a device config or a Publisher (paths absolute)."""
        return {"server_secret_key": str(self.server_secret), "allowed_clients": str(self.allowed_clients)}

    def client_keys(self, secret: Path | None = None, server: Path | None = None):
        """:class:`edge.link.client.ClientKeys` of the allowed client (or another secret file / pinned server key)."""
        from edge.link.client import ClientKeys

        return ClientKeys.load(server or self.server_public, secret or self.client_secret)


def make_curve_files(root: Path) -> CurveFiles:
    """Real ``zmq.auth`` certificates under ``root``, made by the ``keys`` commands' own code."""
    from edge.link.keys import allow, create_key_pair

    server_public, server_secret = create_key_pair(root / "device", "server")
    client_public, client_secret = create_key_pair(root / "kiosk", "kiosk-1")
    _, stranger_secret = create_key_pair(root / "stranger", "stranger")
    allowed = root / "clients"
    allowed.mkdir()
    allow(client_public, allowed)
    return CurveFiles(server_public, server_secret, allowed, client_public, client_secret, stranger_secret)


# -- builders: device configs, labels messages, YAML files ----------------------------------------------


def loopback_publish(**fields: Any) -> dict:
    """``publish`` of a device on loopback: both sockets on random free ports, plaintext (``curve: null``,
    allowed on loopback), and ``fields`` (``heartbeat_s``, ``hwm``, or another ``snapshot_endpoint``...)."""
    return {"endpoint": ANY, "snapshot_endpoint": ANY, "curve": None, **fields}


def device_config(model: str | Path | dict = "m.onnx", cameras: list[dict] | None = None, *, device: str = "case-01",
                  threads: int | None = None, publish: dict | None = None, **sections: Any) -> dict:
    """An ``edge.yaml`` document as a dict, new at each call (tests change it in place before parsing it).

    Args:
        model: the model's path, or the whole ``model`` section (with ``precision``, ``checksums``...).
        cameras: the ``cameras`` list; by default one camera ``cam0`` on ``file:///v.mp4``, a file no config
            test opens.
        device: the device's id.
        threads: a config the loop runs here: ONNX Runtime on this many threads, and no metrics port
            (tests and benches run loops side by side). ``None``: the runtime and metrics are the defaults.
        publish: the ``publish`` section; by default ``{"curve": None}`` (plaintext, default endpoints),
            which a config must say explicitly. :func:`loopback_publish` gives random loopback ports.
        sections: other top-level sections (``postprocess``, ``states``, ``runtime``, ``metrics``...),
            replacing the ones above.
    """
    data: dict[str, Any] = {"device": device,
                            "model": dict(model) if isinstance(model, dict) else {"path": str(model)}}
    if threads is not None:
        data["runtime"] = {"name": "onnxruntime", "options": {"threads": threads}}
    data["cameras"] = cameras if cameras is not None else [{"id": "cam0", "source": "file:///v.mp4"}]
    data["publish"] = publish if publish is not None else {"curve": None}
    if threads is not None:
        data["metrics"] = {"port": None}
    data.update(sections)
    return data


def write_yaml(path: Path, data: Any, *, sort_keys: bool = True) -> Path:
    """Write ``data`` to ``path`` with ``yaml.safe_dump`` and return ``path``.

    ``str`` or ``bytes`` are written as they are: a document a test broke by hand (bad UTF-8, a duplicate key).
    """
    if isinstance(data, str):
        data = data.encode()
    elif not isinstance(data, bytes):
        data = yaml.safe_dump(data, sort_keys=sort_keys).encode()
    path.write_bytes(data)
    return path


def labels_message(slots: dict[str, str], *, device: str = "case-01", camera: str = "cam0", seq: int = 0,
                   model: dict | None = None, score: float = 0.97, latencies_ms: dict | None = None,
                   capture_age_s: float = 0.0) -> dict:
    """A schema-valid labels message whose slots carry exactly these labels, each stable at ``score``.

    For consumers (the kiosk, HQ, benches) that need chosen labels; :func:`make_labels` runs the real
    postprocessing instead. ``capture_age_s``: how long before publishing the frame was captured.
    """
    counts = {c: 0 for c in (*DEFAULT_CLASSES, "unknown")}
    for lab in slots.values():
        counts[lab] = counts.get(lab, 0) + 1
    now = time.time()
    return {"schema_version": messages.SCHEMA_VERSION, "kind": "labels", "device": device, "camera": camera,
            "seq": seq, "capture_ts": now - capture_age_s, "publish_ts": now, "model": dict(model or MODEL),
            "slots": [{"name": n, "label": lab, "score": score, "topk": [{"label": lab, "score": score}],
                       "stable": True} for n, lab in slots.items()],
            "counts": counts, "latencies_ms": dict(latencies_ms or _LATENCIES)}


def make_labels(camera: str, device: str = "case-01", n_slots: int = 4) -> dict:
    """A valid labels message from ``camera``: ``n_slots`` slots of random logits over the default classes."""
    pp = Postprocessor(DEFAULT_CLASSES, [f"s{i}" for i in range(n_slots)], window=1)
    result = pp.update(np.random.default_rng(1).normal(0, 3, (n_slots, len(DEFAULT_CLASSES))))
    return messages.labels_message(device=device, camera=camera, capture_ts=time.time(), model=MODEL,
                                   result=result, latencies_ms=_LATENCIES)


# -- photos ----------------------------------------------------------------------------------------------

def make_images(root: Path, per_class: int, seed: int = 0, classes=DEFAULT_CLASSES, size=(48, 56)) -> Path:
    """Class folders of simple synthetic photos (a tinted background with a coloured disc)."""
    rng = np.random.default_rng(seed)
    h, w = size
    for ci, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = np.full((h, w, 3), 30 + 25 * ci, np.uint8)
            centre = (int(rng.integers(8, w - 8)), int(rng.integers(8, h - 8)))
            cv2.circle(img, centre, int(rng.integers(4, 12)), [int(v) for v in rng.integers(0, 255, 3)], -1)
            cv2.imwrite(str(root / name / f"{i:03d}.png"), img)
    return root
