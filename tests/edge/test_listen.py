"""Listener and ``listen`` over real sockets: seq gaps (induced and real HWM drops), snapshot, output modes."""
from __future__ import annotations

import argparse
import io
import json
import re
import subprocess
import sys
import threading
import time

import pytest
import zmq

from edge.errors import ConfigError, MessageError
from edge.link import messages
from edge.link.listen import Listener, add_arguments, run
from edge.link.publisher import Publisher
from tests.helpers import ANY, make_labels

ROOT_PREFIX = b"gemsight/"


def raw_pub() -> tuple[zmq.Socket, str]:
    sock = zmq.Context.instance().socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(ANY)
    return sock, sock.getsockopt(zmq.LAST_ENDPOINT).decode()


def join(send, listener: Listener, timeout: float = 5.0):
    """Slow joiner: keep sending (heartbeats) until the listener hears one; returns that event."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        send()
        ev = listener.recv(0.05)
        if ev is not None:
            return ev
    raise AssertionError("listener never joined")


def send_labels(sock: zmq.Socket, seq: int, camera: str = "cam0") -> None:
    msg = make_labels(camera)
    msg["seq"], msg["publish_ts"] = seq, time.time()
    sock.send_multipart([messages.topic("case-01", camera, "labels").encode(), messages.encode(msg)])


def send_heartbeat(sock: zmq.Socket, cameras: dict) -> None:
    msg = messages.heartbeat_message(device="case-01", ts=time.time(), uptime_s=1.0, cameras=cameras)
    sock.send_multipart([messages.topic("case-01", None, "heartbeat").encode(), messages.encode(msg)])


def drain(listener: Listener, idle: float = 0.5) -> list:
    out = []
    while (ev := listener.recv(idle)) is not None:
        out.append(ev)
    return out


def test_listener_reports_induced_gaps_tail_loss_and_restart():
    sock, endpoint = raw_pub()
    with Listener(endpoint, plaintext=True) as lis:
        join(lambda: send_heartbeat(sock, {}), lis)
        for seq in [0, 1, 2, 5, 6, 9]:
            send_labels(sock, seq)
        send_labels(sock, 9)  # a duplicate is skipped
        send_heartbeat(sock, {"cam0": {"seq": 12, "state": "up"}})  # 10-12 were lost at the tail
        send_labels(sock, 0)  # the publisher restarted
        send_labels(sock, 1)
        events = drain(lis)
        labels = [e for e in events if e.kind == "labels"]
        assert [e.msg["seq"] for e in labels] == [0, 1, 2, 5, 6, 9, 0, 1]
        assert [g for e in events for g in e.gaps] == [("cam0", 3, 4), ("cam0", 7, 8), ("cam0", 10, 12)]
        s = lis.summary()["cam0"]
        assert s["missed"] == 7 and s["gaps"] == [[3, 4], [7, 8], [10, 12]]
        assert s["restarts"] == 1 and s["duplicates_skipped"] == 1 and s["last_seq"] == 1
    sock.close()


def test_listener_skips_malformed_messages(caplog):
    sock, endpoint = raw_pub()
    with Listener(endpoint, plaintext=True) as lis:
        join(lambda: send_heartbeat(sock, {}), lis)
        sock.send_multipart([b"gemsight/case-01/cam0/labels", b"\x80\x04pickle"])
        sock.send_multipart([b"gemsight/case-01/cam0/video", b"{}"])
        sock.send_multipart([b"gemsight/case-01/cam0/labels", b"{}", b"extra"])
        sock.send_multipart([b"gemsight/case-01/cam0/labels", b'{"seq": "x"}'])
        send_labels(sock, 0)
        ev = lis.recv(2.0)
        assert ev is not None and ev.kind == "labels" and ev.msg["seq"] == 0
        assert caplog.text.count("skipping") == 4
    sock.close()


def test_listener_filters_camera_but_keeps_heartbeats():
    sock, endpoint = raw_pub()
    with Listener(endpoint, device="case-01", camera="cam1", plaintext=True) as lis:
        join(lambda: send_heartbeat(sock, {}), lis)
        for seq in range(3):
            send_labels(sock, seq, "cam0")
            send_labels(sock, seq, "cam1")
        send_heartbeat(sock, {"cam0": {"seq": 9}, "cam1": {"seq": 2}})
        events = drain(lis)
        assert [(e.kind, e.camera) for e in events] == [("labels", "cam1")] * 3 + [("heartbeat", None)]
        assert set(lis.tracks) == {"cam1"} and lis.summary()["cam1"]["missed"] == 0
    sock.close()


@pytest.mark.slow
def test_real_drops_at_a_tiny_high_water_mark_are_all_accounted_for():
    n = 6000
    msg = make_labels("cam0", n_slots=12)
    with Publisher("case-01", ANY, hwm=1, curve=None) as pub, Listener(pub.endpoint, rcvhwm=1, plaintext=True) as lis:
        join(pub.send_heartbeat, lis)
        for _ in range(n):  # the listener reads nothing meanwhile: queues overflow, PUB drops
            pub.publish_labels("cam0", msg)
        events = drain(lis)
        pub.send_heartbeat()  # once the queues are empty it gets through and reveals the lost tail
        events += drain(lis)
    s = lis.summary()["cam0"]
    assert s["missed"] > 0, "no message was dropped: the test did not overflow the queues"
    assert s["received"] + s["missed"] == n - s["first_seq"]
    assert s["last_seq"] == n - 1
    assert sum(len(e.gaps) for e in events) == len(s["gaps"])


def test_snapshot_seeds_the_state_and_duplicates_are_skipped():
    with Publisher("case-01", ANY, ANY, curve=None) as pub, Listener(pub.endpoint, snapshot_endpoint=pub.snapshot_endpoint, plaintext=True) as lis:
        join(pub.send_heartbeat, lis)
        for _ in range(5):
            pub.publish_labels("cam0", make_labels("cam0"))  # queued in the SUB, not read yet
        pub.publish_status("cam0", "up")
        snap = lis.fetch_snapshot()
        assert [(e.kind, e.from_snapshot) for e in snap] == [("labels", True), ("status", True)]
        assert snap[0].msg["seq"] == 4
        pub.publish_labels("cam0", make_labels("cam0"))
        events = drain(lis)
        assert [e.msg.get("seq") for e in events if e.kind == "labels"] == [5]  # 0-4 already in the snapshot
        assert lis.summary()["cam0"]["duplicates_skipped"] == 5 and lis.summary()["cam0"]["missed"] == 0


def test_snapshot_errors():
    with Listener("tcp://127.0.0.1:9", plaintext=True) as lis:
        with pytest.raises(MessageError, match="no snapshot endpoint"):
            lis.fetch_snapshot()
    with Listener("tcp://127.0.0.1:9", snapshot_endpoint="tcp://127.0.0.1:9", plaintext=True) as lis:
        with pytest.raises(MessageError, match="did not answer within 0.2 s"):
            lis.fetch_snapshot(timeout_s=0.2)


def parse(argv: list[str]) -> argparse.Namespace:
    """listen's arguments; plaintext (these publishers say ``curve=None``) unless keys are given."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    if not any(a.startswith(("--curve", "--plaintext")) for a in argv):
        argv = [*argv, "--plaintext"]
    return parser.parse_args(argv)


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def run_against_publisher(argv: list[str], out: io.StringIO, n_labels: int = 6) -> int:
    """Run ``listen`` in a thread while this thread publishes until it exits."""
    with Publisher("case-01", ANY, ANY, curve=None) as pub:
        pub.publish_labels("cam0", make_labels("cam0"))
        result = {}
        args = parse([pub.endpoint, "--snapshot", pub.snapshot_endpoint, *argv])
        t = threading.Thread(target=lambda: result.setdefault("rc", run(args, out)))
        t.start()
        deadline = time.monotonic() + 10
        while t.is_alive() and time.monotonic() < deadline:
            pub.publish_labels("cam0", make_labels("cam0"))
            if pub.last_seq("cam0") == 3:
                pub.publish_status("cam0", "up", "opened")
            pub.maybe_heartbeat({"cam0": {"fps": 20.0}})
            time.sleep(0.02)
        t.join(5)
    assert not t.is_alive()
    return result["rc"]


def test_listen_json_lines_parse_and_validate(capsys):
    out = io.StringIO()
    assert run_against_publisher(["--json", "--count", "6", "--timeout", "5"], out) == 0
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    labels = [m for m in lines if m["kind"] == "labels"]
    assert len(labels) == 7  # the snapshot's, then 6 live ones
    for m in lines:
        messages.validate(m, None)
    live = [m["seq"] for m in labels[1:]]
    assert live == list(range(live[0], live[0] + 6))
    assert "summary:" in capsys.readouterr().err  # stdout stays pure JSON


def test_listen_lines_and_table_modes():
    out = io.StringIO()
    assert run_against_publisher(["--count", "4", "--camera", "cam0"], out) == 0
    text = out.getvalue()
    assert "\x1b[" not in text
    assert re.search(r"^case-01/cam0 seq \d+ \(snapshot\) items \d+ \[", text, re.M)
    assert "items " in text and "s0=" in text
    assert "summary:" in text and "cam0: 4 labels" in text and "0 missed" in text
    tty = Tty()
    assert run_against_publisher(["--count", "4"], tty) == 0
    drawn = tty.getvalue()
    assert drawn.count("\x1b[H\x1b[2J") >= 1 and "counts:" in drawn and "case-01/cam0" in drawn


def test_listen_timeout_without_messages_returns_1():
    assert run(parse(["tcp://127.0.0.1:9", "--timeout", "0.2"]), io.StringIO()) == 1


@pytest.mark.parametrize("argv, match", [
    (["tcp://127.0.0.1:9", "--count", "0"], "--count"),
    (["tcp://127.0.0.1:9", "--timeout", "-1"], "--timeout"),
    (["bogus-endpoint"], "endpoint 'bogus-endpoint' is not a valid ZeroMQ endpoint"),
])
def test_listen_bad_arguments(argv, match):
    with pytest.raises(ConfigError, match=match):
        run(parse(argv), io.StringIO())


def test_listen_module_main_runs_as_a_command():
    with Publisher("case-01", ANY, curve=None) as pub:
        proc = subprocess.Popen([sys.executable, "-m", "edge.link.listen", pub.endpoint, "--plaintext", "--json", "--count", "3",
                                 "--timeout", "10"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            pub.publish_labels("cam0", make_labels("cam0"))
            time.sleep(0.02)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert len([json.loads(line) for line in out.splitlines()]) == 3
    bad = subprocess.run([sys.executable, "-m", "edge.link.listen", "nonsense", "--plaintext"], capture_output=True,
                         text=True, timeout=30)
    assert bad.returncode == 2 and "gemsight-listen: error: device endpoint 'nonsense'" in bad.stderr


def test_renderer_reports_gaps_in_line_mode_and_keeps_json_stdout_clean(caplog):
    from edge.link.listen_view import Event
    from edge.link.listen_view import Renderer

    msg = make_labels("cam0")
    msg["seq"] = 9
    ev = Event("labels", "cam0", msg, messages.encode(msg), gaps=[("cam0", 3, 4), ("cam0", 7, 7)])
    lines = io.StringIO()
    Renderer(lines, "lines").show(ev)
    text = lines.getvalue().splitlines()
    assert text[:2] == ["GAP cam0: missed seq 3-4 (2)", "GAP cam0: missed seq 7"]
    assert text[2].startswith("case-01/cam0 seq 9 items ")
    out = io.StringIO()
    Renderer(out, "json").show(ev)
    assert json.loads(out.getvalue()) == msg
    assert "GAP cam0: missed seq 3-4" in caplog.text
