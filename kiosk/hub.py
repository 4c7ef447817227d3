"""Server-sent events: the kiosk's changes fanned out to every open page.

Threads (feed, ticker, handlers) call :meth:`Hub.publish`; each client of ``/api/events`` holds an
asyncio queue on the web server's loop, filled with ``loop.call_soon_threadsafe``. A client that
falls ``QUEUE_MAX`` events behind is dropped (its EventSource reconnects and reloads the state), so
a stuck tab never holds memory.
"""
from __future__ import annotations

import asyncio
import json
import logging
import threading
from typing import Any, AsyncIterator

logger = logging.getLogger(__name__)

QUEUE_MAX = 2000
KEEPALIVE_S = 15.0
_CLOSE = object()


def sse(event: str, data: Any) -> bytes:
    """One server-sent event (``data`` as one line of JSON)."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n".encode()


class Hub:
    """Fan-out of events to SSE clients on one asyncio loop."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clients: set[asyncio.Queue] = set()
        self._lock = threading.Lock()
        self.published = 0
        self.dropped_clients = 0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The web server's loop (set at start-up)."""
        self._loop = loop

    @property
    def clients(self) -> int:
        return len(self._clients)

    def publish(self, event: str, data: Any) -> None:
        """Queue an event for every client (any thread)."""
        loop = self._loop
        if loop is None or not self._clients:
            return
        chunk = sse(event, data)
        self.published += 1
        try:
            loop.call_soon_threadsafe(self._deliver, chunk)
        except RuntimeError:     # the loop closed while shutting down
            pass

    def _deliver(self, chunk: bytes) -> None:
        with self._lock:
            clients = list(self._clients)
        for q in clients:
            if q.qsize() >= QUEUE_MAX:
                self.dropped_clients += 1
                logger.warning("SSE client %d events behind: dropped (it reconnects)", q.qsize())
                self._remove(q)
                q.put_nowait(_CLOSE)
            else:
                q.put_nowait(chunk)

    def _remove(self, q: asyncio.Queue) -> None:
        with self._lock:
            self._clients.discard(q)

    async def stream(self, first: bytes = b"") -> AsyncIterator[bytes]:
        """One client's event stream (``first`` is sent at once, e.g. a hello event)."""
        q: asyncio.Queue = asyncio.Queue()
        with self._lock:
            self._clients.add(q)
        try:
            if first:
                yield first
            while True:
                try:
                    item = await asyncio.wait_for(q.get(), KEEPALIVE_S)
                except asyncio.TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                if item is _CLOSE:
                    return
                yield item
        finally:
            self._remove(q)

    def close_all(self) -> None:
        """End every stream (server shutdown)."""
        with self._lock:
            clients = list(self._clients)
            self._clients.clear()
        for q in clients:
            if self._loop is not None:
                try:
                    self._loop.call_soon_threadsafe(q.put_nowait, _CLOSE)
                except RuntimeError:
                    pass
