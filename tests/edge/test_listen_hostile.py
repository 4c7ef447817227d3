"""``listen`` survives any bytes and never goes deaf: lone surrogates, UTF-16/32 payloads, non-UTF-8 bytes,
and messages over its size limits (issue 32 B1, B2), over real sockets on loopback."""
from __future__ import annotations

import argparse
import io
import json
import logging
import threading
import time

import pytest

from edge.link import messages
from edge.link.listen import HARD_MAX_BYTES, MAX_MESSAGE_BYTES, Listener, add_arguments, run
from edge.link.listen_view import Renderer
from tests.edge.test_listen import join, raw_pub, send_heartbeat, send_labels
from tests.helpers import make_labels

LABELS = b"gemsight/case-01/cam0/labels"
STATUS = b"gemsight/case-01/cam0/status"


def _labels_with_label(label: str, seq: int = 0) -> bytes:
    msg = make_labels("cam0")
    msg.update(seq=seq, publish_ts=time.time())
    msg["slots"][0]["label"] = label
    return messages.encode(msg)  # ensure_ascii: a lone surrogate goes out as the JSON escape "\ud800"


def _status_with_detail(detail: str) -> bytes:
    return messages.encode(messages.status_message(device="case-01", camera="cam0", state="down", detail=detail,
                                                   ts=time.time()))


def _stdout(tty: bool = False) -> io.TextIOWrapper:
    """Like sys.stdout: a strict UTF-8 text stream over bytes (io.StringIO would accept any str)."""
    class Out(io.TextIOWrapper):
        def isatty(self) -> bool:
            return tty

    return Out(io.BytesIO(), encoding="utf-8", errors="strict", write_through=True)


def _listen(argv: list[str], out: io.TextIOBase, publish) -> int:
    """Run ``listen ARGV`` in a thread while ``publish(sock, i)`` is called until it returns."""
    sock, endpoint = raw_pub()
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([endpoint, "--plaintext", *argv])
    result: dict = {}
    t = threading.Thread(target=lambda: result.setdefault("rc", run(args, out)))
    t.start()
    i, deadline = 0, time.monotonic() + 20
    try:
        while t.is_alive() and time.monotonic() < deadline:
            publish(sock, i)
            i += 1
            time.sleep(0.02)
        t.join(5)
    finally:
        sock.close()
    assert not t.is_alive(), "listen did not stop"
    return result["rc"]


@pytest.mark.parametrize("json_mode", [False, True])
def test_b1_lone_surrogates_in_a_label_or_a_detail(json_mode):
    out = _stdout()

    def publish(sock, i):
        sock.send_multipart([STATUS, _status_with_detail("\udfff")])
        sock.send_multipart([LABELS, _labels_with_label("\ud800", seq=i)])

    rc = _listen(["--count", "3", "--timeout", "5", *(["--json"] if json_mode else [])], out, publish)
    text = out.buffer.getvalue().decode("utf-8")
    assert rc == 0 and "\\ud800" in text and "\\udfff" in text


def test_b1_table_mode_shows_lone_surrogates_escaped():
    out = _stdout(tty=True)
    view = Renderer(out, "table")
    sock, endpoint = raw_pub()
    with Listener(endpoint, plaintext=True) as lis:
        join(lambda: send_heartbeat(sock, {}), lis)
        sock.send_multipart([LABELS, _labels_with_label("\ud800")])
        sock.send_multipart([STATUS, _status_with_detail("x\udfff")])
        while (ev := lis.recv(0.5)) is not None:
            view.show(ev)
        view.finish()
    sock.close()
    text = out.buffer.getvalue().decode("utf-8")
    assert "\\ud800" in text and "x\\udfff" in text


@pytest.mark.parametrize("codec", ["utf-16", "utf-32", "utf-16-le", "latin-1"])
def test_b1_a_payload_that_is_not_utf8_is_skipped_in_json_mode(codec, caplog):
    caplog.set_level(logging.WARNING, logger="edge.link.listen")
    out = _stdout()

    def publish(sock, i):
        msg = messages.decode(_labels_with_label("émeraude", seq=1000 + i))
        sock.send_multipart([LABELS, json.dumps(msg, ensure_ascii=False).encode(codec)])
        send_labels(sock, i)

    rc = _listen(["--json", "--count", "2", "--timeout", "5"], out, publish)
    lines = out.buffer.getvalue().decode("utf-8").splitlines()
    assert rc == 0 and lines and all(messages.decode(line)["seq"] < 1000 for line in lines)
    assert "skipping a bad message: message is not" in caplog.text


def test_b2_a_message_over_the_limit_is_skipped_with_a_warning(caplog):
    caplog.set_level(logging.WARNING, logger="edge.link.listen")
    sock, endpoint = raw_pub()
    with Listener(endpoint, plaintext=True) as lis:
        join(lambda: send_heartbeat(sock, {}), lis)
        caplog.clear()
        sock.send_multipart([LABELS, b" " * (MAX_MESSAGE_BYTES + 1)])
        for seq in range(20):
            send_labels(sock, seq)
        got = [ev.msg["seq"] for ev in iter(lambda: lis.recv(1.0), None) if ev.kind == "labels"]
        assert got == list(range(20)) and lis.rejected == 1
        assert f"skipping a message of {MAX_MESSAGE_BYTES + 1} bytes" in caplog.text
    sock.close()


def test_b2_a_message_over_the_hard_limit_is_said_and_the_listener_hears_again(caplog):
    caplog.set_level(logging.WARNING, logger="edge.link.listen")
    sock, endpoint = raw_pub()
    with Listener(endpoint, plaintext=True) as lis:
        join(lambda: send_heartbeat(sock, {}), lis)
        sock.send_multipart([LABELS, b" " * (HARD_MAX_BYTES + 1)])  # libzmq closes the connection, for good
        seen, deadline, seq = [], time.monotonic() + 10, 0
        while len(seen) < 5 and time.monotonic() < deadline:
            send_labels(sock, seq)
            seq += 1
            ev = lis.recv(0.05)
            if ev is not None and ev.kind == "labels":
                seen.append(ev.msg["seq"])
        assert len(seen) == 5, "the listener went deaf after an oversize message"
        assert lis.reconnects >= 1 and "connection to" in caplog.text and "connecting again" in caplog.text
    sock.close()
