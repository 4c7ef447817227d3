"""sd_notify over a real AF_UNIX datagram socket (a path and an abstract name), as systemd listens."""
import os
import socket
import uuid

import pytest

from edge.loop.sdnotify import SdNotifier


@pytest.fixture
def listener(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    sock.bind(str(path))
    sock.settimeout(2.0)
    yield str(path), sock
    sock.close()


def test_ready_status_watchdog_to_a_path(listener):
    path, sock = listener
    n = SdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"})
    assert n.enabled and n.watchdog_s == pytest.approx(1.0)  # half of WatchdogSec
    assert n.ready("running 1 camera")
    assert sock.recv(4096) == b"READY=1\nSTATUS=running 1 camera"
    assert n.status("cam0 up 10.0 fps")
    assert sock.recv(4096) == b"STATUS=cam0 up 10.0 fps"
    assert n.maybe_watchdog(now=100.0)
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert not n.maybe_watchdog(now=100.5)   # not yet half the interval
    assert n.maybe_watchdog(now=101.01)
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert n.stopping()
    assert sock.recv(4096) == b"STOPPING=1"
    n.close()


def test_abstract_socket_name():
    name = f"gemsight-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2.0)
    try:
        n = SdNotifier({"NOTIFY_SOCKET": "@" + name})
        assert n.ready()
        assert sock.recv(4096) == b"READY=1"
    finally:
        sock.close()


def test_without_systemd_everything_is_a_no_op():
    n = SdNotifier({})
    assert not n.enabled
    assert not n.ready() and not n.maybe_watchdog() and n.watchdog_s is None


def test_watchdog_for_another_pid_or_garbage_is_ignored(listener):
    path, _ = listener
    assert SdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000",
                       "WATCHDOG_PID": str(os.getpid() + 1)}).watchdog_s is None
    assert SdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "soon"}).watchdog_s is None
    assert SdNotifier({"NOTIFY_SOCKET": "relative/name"}).enabled is False


def test_gone_socket_does_not_raise(tmp_path):
    n = SdNotifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens.sock")})
    assert n.enabled and n.ready() is False


def test_a_receiver_that_does_not_read_never_blocks(listener):
    path, _ = listener
    n = SdNotifier({"NOTIFY_SOCKET": path})
    sent = [n.status(f"n={i}") for i in range(2000)]  # far more than a datagram queue holds
    assert sent[0] and not all(sent)
