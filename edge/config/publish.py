"""The ``publish`` section of the device config: where messages go, and how the link is secured.

``publish.curve`` must be written: a mapping naming the device's secret certificate and the
allow-list directory (CURVE, the default ``gemsight-deploy install`` writes), or ``null`` for
plaintext. A config without it is refused, so that plaintext is never what one gets by leaving
something out. Paths are resolved against the config file by :func:`edge.config.device.parse_config`.

An endpoint is checked address by address: libzmq reads ``tcp://a:1;b:2`` as a list, and binds
every element, so each must be a valid ``host:port`` (and, for plaintext, loopback:
:func:`edge.link.policy.is_loopback`).
"""
from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator, model_validator

from edge.validation import Strict

_TCP_ADDRESS = re.compile(r"^(\[[0-9A-Za-z:.%]+\]|[^\s\[\]:;/]+):(\d{1,5}|\*)$")


def endpoint_elements(endpoint: str) -> list[str]:
    """The addresses a ZeroMQ endpoint names, one endpoint each: libzmq splits ``tcp://a;b`` at the ``;``."""
    scheme, sep, rest = endpoint.partition("://")
    if not sep or scheme.lower() != "tcp":
        return [endpoint]
    return [f"{scheme}://{part}" for part in rest.split(";")]


def check_endpoint(endpoint: str) -> str:
    """``endpoint`` if it is a ZeroMQ bind endpoint whose every element is well formed.

    Raises:
        ValueError: naming the endpoint and, for a list, the bad element.
    """
    if not re.match(r"^(tcp|ipc|inproc)://\S+$", endpoint):
        raise ValueError(f"'{endpoint}' is not a ZeroMQ endpoint (tcp://host:port, ipc://path or inproc://name)")
    elements = endpoint_elements(endpoint)
    for element in elements:
        address = element.partition("://")[2]
        port = address.rpartition(":")[2]
        if element.lower().startswith("tcp://") and (not _TCP_ADDRESS.match(address)
                                                       or (port != "*" and not 0 < int(port) < 65536)):
            within = f" (element '{element}' of the list)" if len(elements) > 1 else ""
            raise ValueError(f"'{endpoint}' is not a tcp://host:port endpoint{within}")
    return endpoint


class CurveConfig(Strict):
    """CURVE on both sockets: the device's key pair and the clients it answers (see the README's "Security")."""

    server_secret_key: str = Field(
        description="The device's secret certificate (zmq.auth format, e.g. server.key_secret): a bare name is read "
                    "from $CREDENTIALS_DIRECTORY, a path with a '/' is relative to this config file. The key "
                    "itself never goes here.")
    allowed_clients: str = Field(
        description="Directory of the client public certificates (*.key) allowed to connect, relative to this "
                    "config file; reloaded while running (`gemsight-edge keys allow` / `revoke`).")


_MISSING = object()  # `curve` left out (as opposed to `curve: null`)
CURVE_MISSING = ("missing: the link is CURVE by default: give publish.curve: {server_secret_key: ..., "
                  "allowed_clients: ...} (gemsight-deploy install writes both), or write `curve: null` "
                  "for plaintext")


class PublishConfig(Strict):
    endpoint: str = Field("tcp://127.0.0.1:5555", description="ZeroMQ PUB bind endpoint.")
    snapshot_endpoint: str | None = Field(
        "tcp://127.0.0.1:5556", description="ZeroMQ REP bind endpoint answering late joiners with the last state.")
    heartbeat_s: float = Field(1.0, strict=True, gt=0, le=3600, description="Heartbeat interval in seconds.")
    hwm: int = Field(1000, strict=True,
                     ge=1, le=1_000_000, description="PUB send high-water mark (messages per subscriber).")
    curve: CurveConfig | None = Field(
        _MISSING, validate_default=True,
        description="Required. CURVE keys and allow-list for both sockets; `null` (written explicitly) means "
                    "plaintext, logged as a warning at every start and refused on a non-loopback endpoint "
                    "unless `gemsight-edge run --insecure`.")

    @model_validator(mode="before")
    @classmethod
    def _old_field(cls, data: Any) -> Any:
        if isinstance(data, dict) and "curve_secret_key_file" in data:
            raise ValueError("curve_secret_key_file was replaced by publish.curve: {server_secret_key: <the "
                             "same file>, allowed_clients: <directory of client .key files>} (or `curve: null`)")
        return data

    @field_validator("curve", mode="before")
    @classmethod
    def _curve_written(cls, v: Any) -> Any:
        if v is _MISSING:
            raise ValueError(CURVE_MISSING)
        return v

    @field_validator("endpoint", "snapshot_endpoint")
    @classmethod
    def _zmq_endpoint(cls, v: str | None) -> str | None:
        return v if v is None else check_endpoint(v)
