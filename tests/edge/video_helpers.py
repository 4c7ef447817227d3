"""Small real video files for source and loop tests (written with OpenCV, read back through FFmpeg)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


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
