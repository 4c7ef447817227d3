"""The ``listen`` fuzz target: hostile messages over a real socket, then proof that listen still hears.

Each case publishes one or more hostile messages on a raw PUB socket on loopback: valid messages
re-encoded as UTF-16, UTF-32 or UTF-8 carrying surrogates, JSON holding lone surrogates
(``"\\ud800"``), random bytes, messages just over ``listen``'s 1 MiB limit and, now and then, over the
16 MiB limit at which libzmq closes the connection. Then it publishes a well-formed labels message
of a ``sync`` camera until the listener shows it. Every event is rendered in the three output modes
into strict UTF-8 streams, as stdout is. Failures: any exception (a crash), or the ``sync`` message
not arriving within :data:`DEAF_S` seconds (a silent stop).
"""
from __future__ import annotations

import contextlib
import io
import json
import time
from pathlib import Path
from typing import Iterator

import zmq
from hypothesis import strategies as st

from tests.fuzz.strategies import pick, valid_message

DEAF_S = 10.0
TOPICS = {"labels": b"gemsight/case-01/cam0/labels", "status": b"gemsight/case-01/cam0/status",
          "heartbeat": b"gemsight/case-01/_/heartbeat"}
SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)


class _Out(io.TextIOWrapper):
    """Like sys.stdout: strict UTF-8 over bytes (a StringIO would take any str)."""

    tty = False

    def isatty(self) -> bool:
        return self.tty

    def reset(self) -> None:
        self.flush()
        self.buffer.seek(0)
        self.buffer.truncate()


def _strict_out(tty: bool) -> _Out:
    out = _Out(io.BytesIO(), encoding="utf-8", errors="strict")
    out.tty = tty
    return out


@st.composite
def _reencoded(draw: st.DrawFn) -> tuple[bytes, bytes]:
    kind = draw(st.sampled_from(sorted(TOPICS)))
    text = json.dumps(draw(valid_message(kind)), ensure_ascii=False)
    codec = draw(st.sampled_from(["utf-16", "utf-16-le", "utf-32", "utf-8-surrogates"]))
    if codec == "utf-8-surrogates":
        at = draw(st.integers(0, max(0, len(text) - 1)))
        data = (text[:at] + '"' + draw(SURROGATES) + '"' + text[at:]).encode("utf-8", "surrogatepass")
    else:
        data = text.encode(codec, "surrogatepass")  # a drawn text may already hold surrogates
    return TOPICS[kind], data


@st.composite
def _surrogate_strings(draw: st.DrawFn) -> tuple[bytes, bytes]:
    kind = draw(st.sampled_from(["labels", "status"]))
    msg = draw(valid_message(kind))
    odd = draw(st.text(st.one_of(SURROGATES, st.characters()), min_size=1, max_size=6))
    if kind == "labels" and msg.get("slots"):
        msg["slots"][0]["label"] = odd
    else:
        msg["detail"] = odd
    return TOPICS[kind], json.dumps(msg).encode()  # ensure_ascii: "\ud800" escapes, as a publisher sends them


def _oversize(which: str) -> tuple[bytes, bytes]:
    from edge.link.listen import HARD_MAX_BYTES, MAX_MESSAGE_BYTES  # noqa: PLC0415

    return TOPICS["labels"], b" " * ((HARD_MAX_BYTES if which == "hard" else MAX_MESSAGE_BYTES) + 1)


MESSAGE = pick(_reencoded(), _surrogate_strings(),
               st.tuples(st.sampled_from(list(TOPICS.values())), st.binary(max_size=200)),
               # One in 40 oversize messages is over the hard limit (each costs a reconnect, about a second).
               st.integers(0, 39).map(lambda i: _oversize("hard" if i == 0 else "soft")))


@contextlib.contextmanager
def open_listen(workdir: Path) -> Iterator[tuple[st.SearchStrategy, object]]:
    from edge.link import messages  # noqa: PLC0415
    from edge.link.listen import Listener  # noqa: PLC0415
    from edge.link.listen_view import Renderer  # noqa: PLC0415
    from tests.helpers import make_labels  # noqa: PLC0415

    pub = zmq.Context.instance().socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind("tcp://127.0.0.1:*")
    endpoint = pub.getsockopt(zmq.LAST_ENDPOINT).decode()
    sync = make_labels("sync")
    seq = 0

    def send_sync() -> int:
        nonlocal seq
        seq += 1
        sync.update(seq=seq, publish_ts=time.time())
        pub.send_multipart([b"gemsight/case-01/sync/labels", messages.encode(sync)])
        return seq

    try:
        with Listener(endpoint, plaintext=True) as lis:
            views = [Renderer(_strict_out(tty), mode) for mode, tty in (("json", False), ("lines", False),
                                                                        ("table", True))]

            def heard(since: int) -> bool:
                """Publish sync messages until one newer than ``since`` is shown (False after DEAF_S)."""
                deadline = time.monotonic() + DEAF_S
                while time.monotonic() < deadline:
                    send_sync()
                    while (ev := lis.recv(0.05)) is not None:
                        for view in views:  # what `listen` does with each event, in every mode
                            view.show(ev)
                            view.out.reset()
                        if ev.kind == "labels" and ev.camera == "sync" and ev.msg["seq"] > since:
                            return True
                return False

            if not heard(0):
                raise RuntimeError("listen fuzz target: the listener never joined")

            def check(frames: list[tuple[bytes, bytes]]) -> str:
                rejected, reconnects, since = lis.rejected, lis.reconnects, seq
                for topic, payload in frames:
                    pub.send_multipart([topic, payload])
                if not heard(since):
                    raise AssertionError(f"listen went deaf after {[(t, p[:60]) for t, p in frames]}"[:400])
                if lis.reconnects > reconnects:
                    return "reconnected"
                return "skipped" if lis.rejected > rejected else "shown"

            yield st.lists(MESSAGE, min_size=1, max_size=3), check
    finally:
        pub.close()
