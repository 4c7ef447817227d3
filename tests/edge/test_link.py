"""The secure link on real loopback sockets: CURVE, the ZAP allow-list, pinning, handshake errors, plaintext."""
from __future__ import annotations

import contextlib
import logging
import time

import pytest
import zmq

from edge.cli.main import main as cli_main
from edge.errors import ConfigError, LinkError
from edge.link import allowlist
from edge.link.client import ClientKeys, Link
from edge.link.keys import allow, revoke
from edge.link.listen import Listener
from edge.link.policy import check_link, is_loopback
from edge.link.publisher import Publisher
from tests.helpers import ANY, make_curve_files, make_labels

pytestmark = pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CURVE")


@pytest.fixture
def curve(tmp_path):
    return make_curve_files(tmp_path)


@pytest.fixture
def fast_reload(monkeypatch):
    monkeypatch.setattr(allowlist, "POLL_S", 0.05)


def _config(curve):
    from edge.config.publish import CurveConfig

    return CurveConfig(**curve.config)


def first_labels(pub: Publisher, lis: Listener, timeout: float = 5.0):
    """Publish until ``lis`` gets a labels message (the slow joiner); returns its event."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pub.publish_labels("cam0", make_labels("cam0"))
        ev = lis.recv(0.05)
        while ev is not None:
            if ev.kind == "labels":
                return ev
            ev = lis.recv(0.05)
    raise AssertionError("no labels message arrived")


def refused(pub: Publisher, keys: ClientKeys | None, snapshot: bool = False) -> LinkError:
    """Connect a SUB (or a REQ to the snapshot endpoint) with ``keys`` (plaintext when None) while
    publishing; it must receive nothing and be told."""
    kind, endpoint = (zmq.REQ, pub.snapshot_endpoint) if snapshot else (zmq.SUB, pub.endpoint)
    with Link(kind, endpoint, keys, plaintext=keys is None, device="case-01") as link:
        if snapshot:
            with contextlib.suppress(LinkError):
                link.send(b'{"camera": null}', 0.0)  # a blocking send could hang: see the test below
        else:
            link.socket.setsockopt(zmq.SUBSCRIBE, b"")
        deadline = time.monotonic() + 3.0
        while link.error is None and time.monotonic() < deadline:
            pub.publish_labels("cam0", make_labels("cam0"))
            assert not link.socket.poll(20), "a refused client received a message"
            try:
                link.check()
            except LinkError:
                pass
        assert not link.socket.poll(50)
        assert link.error is not None, "the refusal was never reported"
        return link.error


def test_allowed_client_receives_labels_and_snapshots(curve):
    with Publisher("case-01", ANY, ANY, curve=_config(curve)) as pub:
        with Listener(pub.endpoint, snapshot_endpoint=pub.snapshot_endpoint, device="case-01",
                      keys=curve.client_keys()) as lis:
            ev = first_labels(pub, lis)
            assert ev.msg["device"] == "case-01" and lis.link.handshakes == 1
            snap = lis.fetch_snapshot(timeout_s=3.0)
            assert [e.msg["seq"] for e in snap if e.kind == "labels"] == [pub.last_seq("cam0")]


def test_unknown_key_no_curve_and_wrong_server_key_receive_nothing_and_are_told(curve):
    with Publisher("case-01", ANY, ANY, curve=_config(curve)) as pub:
        stranger = curve.client_keys(secret=curve.stranger_secret)
        assert "not in its allow-list" in str(refused(pub, stranger))
        assert "not in its allow-list" in str(refused(pub, stranger, snapshot=True))
        err = refused(pub, None)
        assert "case-01 at " + pub.endpoint in str(err) and "mechanism mismatch" in str(err)
        assert "mechanism mismatch" in str(refused(pub, None, snapshot=True))
        wrong = curve.client_keys(server=curve.client_public)  # pins a key that is not the device's
        err = refused(pub, wrong)
        assert "pinned server key does not match" in str(err) and "\n" not in str(err)
        assert "pinned server key does not match" in str(refused(pub, wrong, snapshot=True))


def test_publishers_come_and_go_in_one_process(curve):
    """The ZAP authenticator serves the whole process: it used to stop with the last publisher, and the
    next publisher, started at once, failed to bind the ZAP endpoint ("Address already in use")."""
    stranger = curve.client_keys(secret=curve.stranger_secret)
    for _ in range(8):
        with Publisher("case-01", ANY, ANY, curve=_config(curve)) as pub:
            with Listener(pub.endpoint, device="case-01", keys=curve.client_keys()) as lis:
                first_labels(pub, lis)
    with Publisher("case-01", ANY, ANY, curve=_config(curve)) as pub:
        assert "not in its allow-list" in str(refused(pub, stranger))


def test_a_refused_request_link_never_blocks_a_send(curve, caplog):
    """After a refused handshake libzmq may drop the REQ socket's only pipe (it does not reconnect after an
    authentication error); a plain blocking send then waits forever (CI hung here once). Link.send is bounded."""
    caplog.set_level(logging.ERROR, logger="edge.link.allowlist")
    stranger = curve.client_keys(secret=curve.stranger_secret)
    with Publisher("case-01", ANY, ANY, curve=_config(curve)) as pub:
        for attempt in range(40):
            keys = stranger if attempt % 2 else None
            with Link(zmq.REQ, pub.snapshot_endpoint, keys, plaintext=keys is None, device="case-01") as link:
                deadline = time.monotonic() + 5.0
                while link.error is None and time.monotonic() < deadline:
                    with contextlib.suppress(LinkError):
                        link.check()
                    link.monitor.poll(20)
                assert link.error is not None, "the refusal was never reported"
                gone = time.monotonic() + 0.3  # libzmq drops the pipe, when it does, soon after the refusal
                while link.socket.poll(0, zmq.POLLOUT) and time.monotonic() < gone:
                    time.sleep(0.02)
                if link.socket.poll(0, zmq.POLLOUT):
                    continue  # this refusal left the pipe in place: try again
                with pytest.raises(zmq.Again):
                    link.socket.send(b"{}", zmq.NOBLOCK)  # what a blocking send would wait on, forever
                t0 = time.monotonic()
                with pytest.raises(LinkError, match="allow-list|mechanism mismatch"):
                    link.send(b'{"camera": null}', 2.0)
                assert time.monotonic() - t0 < 1.0
                return
    pytest.skip("libzmq kept the REQ pipe through 40 refusals: the hang cannot be shown here")


def test_a_refused_snapshot_request_fails_within_its_timeout(curve, caplog):
    caplog.set_level(logging.ERROR, logger="edge.link.allowlist")
    stranger = curve.client_keys(secret=curve.stranger_secret)
    with Publisher("case-01", ANY, ANY, curve=_config(curve)) as pub:
        for keys in (stranger, None) * 5:
            with Listener(pub.endpoint, snapshot_endpoint=pub.snapshot_endpoint, device="case-01", keys=keys,
                          plaintext=keys is None) as lis:
                t0 = time.monotonic()
                with pytest.raises(LinkError, match="allow-list|mechanism mismatch"):
                    lis.fetch_snapshot(timeout_s=3.0)
                assert time.monotonic() - t0 < 3.5


def test_listen_exits_with_one_line_on_a_refused_handshake(curve, capsys):
    with Publisher("case-01", ANY, curve=_config(curve)) as pub:
        rc = cli_main(["listen", pub.endpoint, "--timeout", "5", "--curve-server-key", str(curve.client_public),
                       "--curve-client-key", str(curve.client_secret)])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1, err
        assert err[0].startswith("gemsight-edge: error: device at tcp://127.0.0.1:") and "server key" in err[0]
        assert cli_main(["listen", pub.endpoint, "--timeout", "5", "--plaintext"]) == 2
        assert "mechanism mismatch" in capsys.readouterr().err
        assert cli_main(["listen", pub.endpoint, "--timeout", "1"]) == 2
        assert "--curve-server-key FILE and --curve-client-key FILE, or --plaintext" in capsys.readouterr().err


def test_allow_list_changes_take_effect_without_a_restart(curve, fast_reload, caplog):
    caplog.set_level(logging.INFO)
    with Publisher("case-01", ANY, ANY, curve=_config(curve)) as pub:
        stranger = curve.client_keys(secret=curve.stranger_secret)
        refused(pub, stranger)
        allow(curve.stranger_secret.with_suffix(".key"), curve.allowed_clients)
        deadline = time.monotonic() + 3
        while "added stranger" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.02)
        with Listener(pub.endpoint, keys=stranger) as lis:
            first_labels(pub, lis)
        # Revoked while connected: the device drops every connection, and the kiosk is refused on reconnect.
        with Listener(pub.endpoint, keys=curve.client_keys()) as lis:
            first_labels(pub, lis)
            revoke("kiosk-1", curve.allowed_clients)
            with pytest.raises(LinkError, match="not in its allow-list"):
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:
                    pub.publish_labels("cam0", make_labels("cam0"))
                    lis.recv(0.02)
        assert "removed kiosk-1" in caplog.text and "dropped every connection" in caplog.text


def test_plaintext_is_refused_off_loopback_unless_insecure(caplog):
    assert is_loopback("tcp://127.0.0.1:5555") and is_loopback("ipc:///run/x") and is_loopback("tcp://[::1]:1")
    assert not is_loopback("tcp://0.0.0.0:5555") and not is_loopback("tcp://*:5555")
    with pytest.raises(ConfigError, match="publish.endpoint 'tcp://0.0.0.0:0' is not loopback but publish.curve is null"):
        Publisher("case-01", "tcp://0.0.0.0:0", curve=None)
    with pytest.raises(ConfigError, match="publish.snapshot_endpoint 'tcp://\\*:0'"):
        Publisher("case-01", ANY, "tcp://*:0", curve=None)
    caplog.set_level(logging.WARNING)
    with Publisher("case-01", "tcp://0.0.0.0:0", curve=None, insecure=True) as pub:
        assert pub.endpoint.startswith("tcp://0.0.0.0:")
    assert "PLAINTEXT" in caplog.text and "(--insecure)" in caplog.text
    caplog.clear()
    Publisher("case-01", ANY, curve=None).close()  # loopback: allowed, and still warned about
    assert "PLAINTEXT" in caplog.text


def test_check_link_reports_and_refuses(curve, tmp_path):
    from edge.config.publish import PublishConfig

    assert check_link(PublishConfig(curve=_config(curve)), insecure=False) == "link: CURVE, 1 allowed client(s) (kiosk-1)"
    plain = PublishConfig(endpoint="tcp://0.0.0.0:5555", curve=None)
    with pytest.raises(ConfigError, match="not loopback"):
        check_link(plain, insecure=False)
    assert check_link(plain, insecure=True) == "link: PLAINTEXT (publish.curve: null)"


def test_server_key_and_allow_list_errors(curve, tmp_path, caplog):
    from edge.config.publish import CurveConfig

    def cfg(**over):
        return CurveConfig(**{**curve.config, **over})

    with pytest.raises(ConfigError, match="server_secret_key .*holds no secret key"):
        Publisher("case-01", ANY, curve=cfg(server_secret_key=str(curve.server_public)))
    with pytest.raises(ConfigError, match="does not exist"):
        Publisher("case-01", ANY, curve=cfg(server_secret_key=str(tmp_path / "nope.key_secret")))
    with pytest.raises(ConfigError, match="allowed_clients .*is not a directory"):
        Publisher("case-01", ANY, curve=cfg(allowed_clients=str(tmp_path / "nope")))
    (curve.allowed_clients / "broken.key").write_text("garbage\n")
    with pytest.raises(ConfigError, match="broken.key: not a readable ZeroMQ certificate"):
        Publisher("case-01", ANY, curve=cfg())
    (curve.allowed_clients / "broken.key").unlink()
    (curve.allowed_clients / "oops.key_secret").write_bytes(curve.stranger_secret.read_bytes())
    caplog.set_level(logging.WARNING)
    with Publisher("case-01", ANY, curve=cfg()) as pub:
        assert pub.allow.names == ["kiosk-1"]  # the secret file is not read as a client
    assert "secret keys never belong in an allow-list" in caplog.text


def test_link_needs_an_explicit_choice():
    with pytest.raises(ConfigError, match="no CURVE keys given; plaintext needs an explicit choice"):
        Link(zmq.SUB, "tcp://127.0.0.1:9", None)
    with pytest.raises(ConfigError, match="endpoint 'nonsense' is not a valid ZeroMQ endpoint"):
        Link(zmq.SUB, "nonsense", None, plaintext=True)
