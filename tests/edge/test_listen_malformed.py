"""Malformed messages reach a listener over a real socket: each is counted, logged in one line and
skipped; ``listen`` in every output mode keeps going (issue 13, item 4)."""
from __future__ import annotations

import argparse
import io
import logging
import threading
import time

import zmq

from edge.link import messages
from edge.link.listen import Listener, add_arguments, run
from edge.link.listen_view import Renderer
from tests.edge.test_listen import Tty, join, raw_pub, send_heartbeat, send_labels
from tests.helpers import make_labels

HB = b"gemsight/case-01/_/heartbeat"
LABELS = b"gemsight/case-01/cam0/labels"
STATUS = b"gemsight/case-01/cam0/status"


def _heartbeat(**changes) -> bytes:
    msg = messages.heartbeat_message(device="case-01", ts=1.0, uptime_s=1.0, cameras={"cam0": {"seq": 1}})
    return messages.encode({**msg, **changes})


def _labels(**changes) -> bytes:
    msg = make_labels("cam0")
    msg.update(seq=0, publish_ts=2.0)
    return messages.encode({**msg, **changes})


def _status(**changes) -> bytes:
    msg = messages.status_message(device="case-01", camera="cam0", state="up", detail="", ts=1.0)
    return messages.encode({**msg, **changes})


def _slot(**changes) -> list:
    slots = make_labels("cam0")["slots"]
    return [{**slots[0], **changes}] + slots[1:]


# The eight cases of issue 13 and more: each was a traceback in at least one output mode.
BAD = [
    (HB, _heartbeat(cameras=["cam0"])),
    (HB, _heartbeat(cameras={"cam0": 5})),
    (HB, _heartbeat(uptime_s="long")),
    (HB, _heartbeat(cameras={"cam0": {"seq": "x"}})),
    (LABELS, _labels(counts=["ring", 2])),
    (LABELS, _labels(slots=[1, 2])),
    (LABELS, _labels(slots=_slot(score="high"))),
    (LABELS, _labels(latencies_ms={"infer": "slow"})),
    (LABELS, _labels(seq="x")),
    (LABELS, _labels(device="case-02")),       # payload and topic disagree
    (LABELS, _status()),                       # a status payload on a labels topic
    (STATUS, _status(state=5)),
    (LABELS, b"[" * 3000),                     # nested past the JSON decoder's recursion limit
    (LABELS, b"1" * 5000),                     # an integer past Python's digit limit
    (LABELS, b"\xff\xfe{}"),
    (b"gemsight/\xff/cam0/labels", _labels()),
]


def _send_bad(sock: zmq.Socket) -> None:
    for frames in BAD:
        sock.send_multipart(list(frames))


def test_listener_counts_and_skips_every_malformed_message(caplog):
    caplog.set_level(logging.WARNING, logger="edge.link.listen")
    sock, endpoint = raw_pub()
    with Listener(endpoint, plaintext=True) as lis:
        join(lambda: send_heartbeat(sock, {}), lis)
        caplog.clear()
        _send_bad(sock)
        send_labels(sock, 0)
        ev = lis.recv(3.0)
        assert ev is not None and ev.kind == "labels" and ev.msg["seq"] == 0
        assert lis.rejected == len(BAD)
        records = [r for r in caplog.records if r.name == "edge.link.listen"]
        assert len(records) == len(BAD)
        for r in records:  # one line each, bounded, naming what was wrong
            text = r.getMessage()
            assert text.startswith("skipping a bad message: ") and "\n" not in text and len(text) < 400
    sock.close()


def test_every_output_mode_survives_malformed_messages():
    for mode, out in (("lines", io.StringIO()), ("table", Tty()), ("json", io.StringIO())):
        sock, endpoint = raw_pub()
        with Listener(endpoint, plaintext=True) as lis:
            join(lambda: send_heartbeat(sock, {"cam0": {"seq": None, "state": "up"}}), lis)
            _send_bad(sock)
            send_labels(sock, 0)
            sock.send_multipart([STATUS, _status()])
            view = Renderer(out, mode)
            # Until the status sent last: recv's timeout bounds its own call, so on a loaded machine it may
            # return None while rejected messages are still being read, and that is no end of the stream.
            deadline = time.monotonic() + 15.0
            while time.monotonic() < deadline:
                ev = lis.recv(0.5)
                if ev is not None:
                    view.show(ev)
                    if ev.kind == "status":
                        break
            view.finish()
            assert lis.rejected == len(BAD)
        sock.close()
        assert "case-01" in out.getvalue(), mode


def test_listen_command_keeps_running_through_malformed_messages():
    sock, endpoint = raw_pub()
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([endpoint, "--plaintext", "--count", "2", "--timeout", "5"])
    out, result = io.StringIO(), {}
    t = threading.Thread(target=lambda: result.setdefault("rc", run(args, out)))
    t.start()
    seq, deadline = 0, time.monotonic() + 10
    while t.is_alive() and time.monotonic() < deadline:
        _send_bad(sock)
        send_labels(sock, seq)
        seq += 1
        time.sleep(0.05)
    t.join(5)
    sock.close()
    assert not t.is_alive() and result.get("rc") == 0
    text = out.getvalue()
    assert "case-01/cam0 seq" in text and "malformed skipped" in text


def test_malformed_snapshot_reply_is_one_clear_error():
    ctx = zmq.Context.instance()
    rep = ctx.socket(zmq.REP)
    rep.setsockopt(zmq.LINGER, 0)
    rep.bind("tcp://127.0.0.1:*")
    endpoint = rep.getsockopt(zmq.LAST_ENDPOINT).decode()
    good = messages.decode(_labels())
    replies = [b'{"cameras": ["cam0"]}', b'{"cameras": {"cam0": 3}}',
               messages.encode({"cameras": {"cam0": {**good, "slots": 5}}}),
               messages.encode({"cameras": {"cam1": good}}), b"[" * 3000]

    def serve():
        for reply in replies:
            if rep.poll(5000):
                rep.recv()
                rep.send(reply)

    t = threading.Thread(target=serve)
    t.start()
    try:
        with Listener("tcp://127.0.0.1:9", snapshot_endpoint=endpoint, plaintext=True) as lis:
            for _ in replies:
                try:
                    lis.fetch_snapshot(timeout_s=3.0)
                except messages.MessageError as exc:
                    assert str(exc).startswith(f"snapshot endpoint {endpoint}: ") and "\n" not in str(exc)
                else:
                    raise AssertionError("a malformed snapshot reply was accepted")
            assert lis.rejected == len(replies)
    finally:
        t.join(5)
        rep.close()
