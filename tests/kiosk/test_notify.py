"""Webhook notifications against a real HTTP server on loopback: one per incident event, signed, retried,
escalated, held in quiet hours (issue 31, defect 10: 406 unsigned POSTs in 10 minutes for one case)."""
from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from kiosk.config_web import WebhookConfig
from kiosk.notify import Notifier

from .feeds import wait_for

SECRET = b"0123456789abcdef0123"
T0 = 1_800_000_000.0     # 2027-01-15 08:00 UTC


@pytest.fixture
def hook():
    posts, fail = [], [0]

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["content-length"]))
            if fail[0] > 0:
                fail[0] -= 1
                self.send_response(503)
            else:
                posts.append((dict(self.headers), body))
                self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook", posts, fail
    server.shutdown()


def notifier(url, now, **cfg):
    n = Notifier(WebhookConfig(url=url, backoff_s=0.05, **cfg), "Test store", SECRET, clock=lambda: now[0],
                 timezone="UTC")
    stop = threading.Event()
    threading.Thread(target=n.run, args=(stop,), daemon=True).start()
    return n, stop


def inc(state="open", kind="missing", **kw):
    return {"id": 7, "kind": kind, "state": state, "opened_at": T0, "device": "case-01", "slot": "r0c0", **kw}


def test_defect10_webhook_once_per_incident_event_signed(hook):
    url, posts, fail = hook
    now = [T0]
    n, stop = notifier(url, now, escalate_after_min=10)
    try:
        fail[0] = 2                                       # the receiver is down twice: retried with back-off
        n.incident("opened", inc())
        for _ in range(400):                              # a flapping slot: updates, never a second "open"
            n.incident("updated", inc())
            n.tick()
        wait_for(lambda: len(posts) == 1)
        now[0] += 11 * 60
        n.tick()
        n.tick()
        wait_for(lambda: len(posts) == 2)
        n.incident("acknowledged", inc(state="acknowledged"))
        n.incident("resolved", inc(state="resolved"))
        n.incident("resolved", inc(state="resolved"))
        wait_for(lambda: len(posts) == 3)
        assert [json.loads(b)["event"] for _, b in posts] == ["open", "escalate", "resolve"]
        for headers, body in posts:
            expected = hmac.new(SECRET, headers["X-Gemsight-Timestamp"].encode() + b"." + body, hashlib.sha256)
            assert headers["X-Gemsight-Signature"] == "sha256=" + expected.hexdigest()
        assert posts[0][0]["X-Gemsight-Delivery"] == "7-open" and n.delivered == 3 and n.failed == 0
    finally:
        stop.set()


def test_quiet_hours_hold_all_but_alarms(hook):
    url, posts, _ = hook
    now = [T0]                                            # 08:00 UTC, inside 20:00-09:00
    n, stop = notifier(url, now, quiet_hours={"start": "20:00", "end": "09:00"}, escalate_after_min=None)
    try:
        n.incident("opened", inc())
        n.incident("opened", inc(kind="smash", id=8))
        wait_for(lambda: len(posts) == 1)
        assert json.loads(posts[0][1])["incident"]["kind"] == "smash"
        now[0] += 3600                                    # 09:00: the held one goes out
        n.tick()
        wait_for(lambda: len(posts) == 2)
        assert json.loads(posts[1][1])["incident"]["kind"] == "missing"
    finally:
        stop.set()


def test_a_receiver_that_never_answers_is_given_up(hook):
    url, posts, fail = hook
    n, stop = notifier(url, [T0], retries=2)
    try:
        fail[0] = 10
        n.incident("opened", inc())
        wait_for(lambda: n.failed == 1)
        assert posts == [] and n.delivered == 0
    finally:
        stop.set()


def test_the_webhook_secret_file_is_checked(tmp_path):
    from edge.errors import ConfigError
    from kiosk.notify import load_secret

    with pytest.raises(ConfigError, match=f"webhook.secret: cannot read {tmp_path}/none"):
        load_secret(str(tmp_path / "none"))
    (tmp_path / "short").write_text("abc\n")
    with pytest.raises(ConfigError, match="holds 3 bytes; at least 16"):
        load_secret(str(tmp_path / "short"))
    (tmp_path / "key").write_bytes(SECRET + b"\n")
    assert load_secret(str(tmp_path / "key")) == SECRET
