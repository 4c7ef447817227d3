"""Where the snapshot REP is bound (edge.link.snapshot_bind): where libzmq would, one-line errors, ipc direct."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.edge.test_snapshot_guard import ask, port_of


@pytest.mark.parametrize(("endpoint", "bound"), [
    ("tcp://localhost:*", "tcp://127.0.0.1:"),
    ("tcp://lo:*", "tcp://127.0.0.1:"),
    ("tcp://127.0.0.2:1;127.0.0.1:*", "tcp://127.0.0.1:"),   # libzmq binds the last element of a list
])
def test_the_guard_listens_where_libzmq_would_bind(endpoint, bound):
    from edge.link.publisher import Publisher

    with Publisher("case-01", "tcp://127.0.0.1:*", endpoint, curve=None) as p:
        assert p.snapshot_endpoint.startswith(bound) and p._guard is not None
        assert ask(p.snapshot_endpoint)["device"] == "case-01"


def test_bad_or_busy_endpoints_are_one_line_errors_and_ipc_is_bound_directly(tmp_path):
    from edge.errors import ConfigError
    from edge.link.publisher import Publisher

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = f"tcp://127.0.0.1:{busy.getsockname()[1]}"
        with pytest.raises(ConfigError, match=f"snapshot endpoint '{taken}' cannot be bound: Address already in use"):
            Publisher("case-01", "tcp://127.0.0.1:*", taken, curve=None)
    with pytest.raises(ConfigError, match=r"snapshot endpoint 'tcp://\[::1\]:\*' cannot be bound: No such device"):
        Publisher("case-01", "tcp://127.0.0.1:*", "tcp://[::1]:*", curve=None)   # as libzmq without ZMQ_IPV6
    with Publisher("case-01", "tcp://127.0.0.1:*", f"ipc://{tmp_path}/snap", curve=None) as p:
        assert p._guard is None and p.snapshot_endpoint == f"ipc://{tmp_path}/snap"
        assert ask(p.snapshot_endpoint)["device"] == "case-01"


def test_no_folder_for_the_private_socket_is_a_one_line_error(tmp_path, monkeypatch):
    import tempfile

    from edge.errors import ConfigError
    from edge.link.publisher import Publisher

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="cannot make the folder of its private socket in .*missing .*TMPDIR"):
        Publisher("case-01", "tcp://127.0.0.1:*", "tcp://127.0.0.1:*", curve=None)


def test_closing_stops_the_guard_and_removes_its_socket_file():
    from edge.link.publisher import Publisher

    with Publisher("case-01", "tcp://127.0.0.1:*", "tcp://127.0.0.1:*", curve=None) as p:
        guard = p._guard
        directory = Path(guard.upstream).parent
        assert directory.is_dir() and (directory.stat().st_mode & 0o777) == 0o700
    assert not guard._thread.is_alive() and not directory.exists()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port_of(p.snapshot_endpoint)), timeout=1).close()
