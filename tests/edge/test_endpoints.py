"""Publish endpoints are read as libzmq reads them: a ``tcp://a;b`` list is checked element by element."""
from __future__ import annotations

import pytest

from edge.config.device import parse_config
from edge.errors import ConfigError
from edge.link.policy import check_link, is_loopback
from edge.link.publisher import Publisher
from tests.helpers import device_config

SMUGGLED = "tcp://127.0.0.1:1;0.0.0.0:25555"


def _config(endpoint: str, snapshot: str | None = None):
    return parse_config(device_config(publish={"endpoint": endpoint, "snapshot_endpoint": snapshot, "curve": None}))


def test_a3_a_list_is_loopback_only_when_every_element_is():
    assert not is_loopback(SMUGGLED) and not is_loopback("tcp://0.0.0.0:2;127.0.0.1:1")
    assert is_loopback("tcp://127.0.0.1:1;127.0.0.2:2") and is_loopback("tcp://[::1]:1")


@pytest.mark.parametrize("field", ["endpoint", "snapshot"])
def test_a3_check_refuses_a_smuggled_list_without_insecure(field):
    cfg = _config(SMUGGLED, None) if field == "endpoint" else _config("tcp://127.0.0.1:5555", SMUGGLED)
    with pytest.raises(ConfigError, match="is not loopback but publish.curve is null") as info:
        check_link(cfg.publish, insecure=False)
    assert SMUGGLED in str(info.value) and "\n" not in str(info.value)
    assert check_link(cfg.publish, insecure=True).startswith("link: PLAINTEXT")


def test_a3_publisher_refuses_a_smuggled_list():
    with pytest.raises(ConfigError, match="not loopback"):
        Publisher("case-01", SMUGGLED, None, curve=None)


@pytest.mark.parametrize("endpoint", ["tcp://127.0.0.1:1;", "tcp://127.0.0.1:1;nonsense", "tcp://127.0.0.1",
                                      "tcp://127.0.0.1:99999", "tcp://a b:1"])
def test_a3_every_element_must_be_host_and_port(endpoint):
    with pytest.raises(ConfigError, match=r"publish\.endpoint: .* is not a (tcp://host:port|ZeroMQ) endpoint"):
        _config(endpoint)


@pytest.mark.parametrize("endpoint", ["tcp://*:5555", "tcp://0.0.0.0:5555", "tcp://127.0.0.1:*", "tcp://[::1]:5",
                                      "tcp://eth0:5555", "ipc:///run/gemsight/pub", "inproc://x"])
def test_a3_ordinary_endpoints_still_pass(endpoint):
    assert _config(endpoint).publish.endpoint == endpoint
