"""Publisher over real ZeroMQ sockets on random loopback ports: labels, status, heartbeat, snapshot (plaintext;
CURVE and the allow-list are in test_link.py)."""
from __future__ import annotations

import time

import pytest
import zmq

from edge.errors import ConfigError, MessageError
from edge.link import messages
from edge.link.publisher import Publisher
from tests.helpers import ANY, make_labels


def subscriber(endpoint: str, prefix: bytes = b"gemsight/", **sockopts) -> zmq.Socket:
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    for opt, val in sockopts.items():
        setattr(sub, opt, val)
    sub.setsockopt(zmq.SUBSCRIBE, prefix)
    sub.connect(endpoint)
    return sub


def wait_joined(pub: Publisher, sub: zmq.Socket, timeout: float = 5.0) -> None:
    """Slow joiner: send heartbeats until the subscriber gets one, then drain what it has."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pub.send_heartbeat()
        if sub.poll(50):
            while sub.poll(50):
                sub.recv_multipart()
            return
    raise AssertionError("subscriber never joined")


def recv_all(sub: zmq.Socket, timeout: float = 2.0) -> list[tuple[str, dict]]:
    out = []
    while sub.poll(int(timeout * 1000)):
        topic, payload = sub.recv_multipart()
        out.append((topic.decode(), messages.decode(payload)))
        timeout = 0.3
    return out


@pytest.fixture
def pub():
    with Publisher("case-01", ANY, ANY, curve=None, hwm=10_000, heartbeat_s=0.2) as p:
        yield p


def test_endpoints_are_the_bound_ports(pub):
    assert pub.endpoint.startswith("tcp://127.0.0.1:") and not pub.endpoint.endswith("*")
    assert pub.snapshot_endpoint.startswith("tcp://127.0.0.1:") and pub.snapshot_endpoint != pub.endpoint


def test_subscriber_receives_every_message_with_consecutive_seq(pub):
    sub = subscriber(pub.endpoint)
    wait_joined(pub, sub)
    seqs = []
    for i in range(300):
        cam = "cam1" if i % 3 == 0 else "cam0"
        msg = make_labels(cam)
        seqs.append(pub.publish_labels(cam, msg))
        assert msg["seq"] == seqs[-1] and msg["publish_ts"] >= msg["capture_ts"]
    got = recv_all(sub)
    sub.close()
    labels = [(t, m) for t, m in got if m["kind"] == "labels"]
    assert len(labels) == 300
    for t, m in labels:
        assert t == f"gemsight/case-01/{m['camera']}/labels"
        messages.validate(m)
    assert [m["seq"] for _, m in labels if m["camera"] == "cam0"] == list(range(200))
    assert [m["seq"] for _, m in labels if m["camera"] == "cam1"] == list(range(100))
    assert pub.last_seq("cam0") == 199 and pub.last_seq("cam9") is None


def test_status_and_heartbeat(pub):
    sub = subscriber(pub.endpoint)
    wait_joined(pub, sub)
    pub.publish_labels("cam0", make_labels("cam0"))
    pub.publish_status("cam0", "down", "no frame for 2.0 s")
    assert pub.maybe_heartbeat({"cam0": {"fps": 9.5, "dropped": 3}, "cam1": {"fps": 0.0}}) is False  # just sent
    time.sleep(0.25)
    assert pub.maybe_heartbeat({"cam0": {"fps": 9.5, "dropped": 3}, "cam1": {"fps": 0.0}}) is True
    assert pub.maybe_heartbeat({}) is False
    got = recv_all(sub)
    sub.close()
    kinds = [m["kind"] for _, m in got]
    assert kinds == ["labels", "status", "heartbeat"]
    (st_topic, st), (hb_topic, hb) = got[1], got[2]
    assert st_topic == "gemsight/case-01/cam0/status" and st["state"] == "down" and "2.0 s" in st["detail"]
    assert hb_topic == "gemsight/case-01/_/heartbeat"
    messages.validate(st, "status")
    messages.validate(hb, "heartbeat")
    assert hb["cameras"]["cam0"] == {"fps": 9.5, "dropped": 3, "seq": 0, "state": "down"}
    assert hb["cameras"]["cam1"] == {"fps": 0.0, "seq": None, "state": None}
    assert hb["uptime_s"] > 0
    with pytest.raises(MessageError, match="state 'asleep'"):
        pub.publish_status("cam0", "asleep")


def snapshot(endpoint: str, request: bytes) -> dict:
    req = zmq.Context.instance().socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    req.connect(endpoint)
    req.send(request)
    assert req.poll(3000), "snapshot endpoint did not answer"
    reply = messages.decode(req.recv())
    req.close()
    return reply


def test_late_joiner_gets_the_latest_state_over_rep(pub):
    for _ in range(3):
        pub.publish_labels("cam0", make_labels("cam0"))
    pub.publish_labels("cam1", make_labels("cam1"))
    pub.publish_status("cam0", "up")
    # A kiosk that connects only now has missed all of that on PUB; the REP endpoint has it.
    reply = snapshot(pub.snapshot_endpoint, b'{"camera": null}')
    assert reply["device"] == "case-01"
    assert set(reply["cameras"]) == {"cam0", "cam1"}
    assert reply["cameras"]["cam0"]["seq"] == 2
    messages.validate(reply["cameras"]["cam0"])
    messages.validate(reply["status"]["cam0"], "status")
    only = snapshot(pub.snapshot_endpoint, b'{"camera": "cam1"}')
    assert set(only["cameras"]) == {"cam1"} and only["status"] == {}
    assert snapshot(pub.snapshot_endpoint, b'{"camera": "nope"}')["cameras"] == {}
    assert snapshot(pub.snapshot_endpoint, b"")["cameras"]  # an empty request means all cameras


# (An oversized request gets no answer at all: test_snapshot_request_size_is_bounded_before_buffering.)
@pytest.mark.parametrize("request_bytes", [b"not json", b'{"camera": 3}', b'{"cam": "x"}', b"[]"])
def test_bad_snapshot_request_gets_an_error_and_the_endpoint_keeps_working(pub, request_bytes):
    assert "error" in snapshot(pub.snapshot_endpoint, request_bytes)
    assert "cameras" in snapshot(pub.snapshot_endpoint, b'{"camera": null}')


def test_message_for_another_camera_or_device_is_refused(pub):
    with pytest.raises(MessageError, match="case-01/cam0 given to the publisher of case-01/cam1"):
        pub.publish_labels("cam1", make_labels("cam0"))
    with pytest.raises(MessageError, match="other/cam0"):
        pub.publish_labels("cam0", make_labels("cam0", device="other"))
    assert pub.last_seq("cam0") is None  # nothing was counted


def test_closed_publisher_refuses_to_send():
    p = Publisher("case-01", ANY, curve=None)
    p.close()
    p.close()  # idempotent
    with pytest.raises(MessageError, match="closed"):
        p.publish_status("cam0", "up")


@pytest.mark.parametrize("args, kwargs, match", [
    (("case 01", ANY), {}, "device 'case 01'"),
    (("case-01", "tcp://nowhere:*"), {}, "publish endpoint 'tcp://nowhere:\\*' cannot be bound"),
    (("case-01", "bogus://x"), {}, "publish endpoint"),
    (("case-01", ANY, "bogus://y"), {}, "snapshot endpoint 'bogus://y'"),
    (("case-01", ANY), {"hwm": 0}, "publish.hwm"),
    (("case-01", ANY), {"heartbeat_s": 0}, "publish.heartbeat_s"),
])
def test_bad_settings_are_named(args, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Publisher(*args, curve=None, insecure=True, **kwargs)


def test_port_in_use_is_a_config_error(pub):
    with pytest.raises(ConfigError, match="cannot be bound"):
        Publisher("case-01", pub.endpoint, curve=None)


def _request(endpoint: str, payload: bytes, timeout_ms: int = 2000) -> bytes | None:
    req = zmq.Context.instance().socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    req.connect(endpoint)
    try:
        req.send(payload)
        return req.recv() if req.poll(timeout_ms) else None
    finally:
        req.close()


def test_snapshot_endpoint_survives_deep_nesting_and_any_failure(pub, monkeypatch):
    # Issue 13 item 1: b'[' * 3000 raised RecursionError in the JSON decoder and killed the thread.
    assert "error" in messages.decode(_request(pub.snapshot_endpoint, b"[" * 3000))
    answer = pub._answer
    calls = []

    def broken(frames):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return answer(frames)

    monkeypatch.setattr(pub, "_answer", broken)
    assert messages.decode(_request(pub.snapshot_endpoint, b'{"camera": null}')) == {
        "error": "request failed: RuntimeError"}
    assert messages.decode(_request(pub.snapshot_endpoint, b'{"camera": null}'))["device"] == "case-01"


def test_snapshot_request_size_is_bounded_before_buffering(pub):
    # Issue 13 item 2: ZMQ_MAXMSGSIZE drops an oversized request's connection unread (no answer at all).
    assert _request(pub.snapshot_endpoint, b" " * (64 * 1024), timeout_ms=300) is None
    assert messages.decode(_request(pub.snapshot_endpoint, b'{"camera": null}'))["device"] == "case-01"
