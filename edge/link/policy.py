"""The server side's link policy: when plaintext is allowed, and what ``gemsight-edge check`` says about the link.

CURVE is the default (:mod:`edge.link.publisher`, :mod:`edge.link.allowlist`). Plaintext (``publish.curve:
null``) is an explicit choice, logged as a warning at every start, and refused on an endpoint that
is not loopback (tcp on 127.0.0.0/8, ``::1``, ``localhost``; ``ipc://``, ``inproc://``) unless
``--insecure`` is given. An endpoint libzmq reads as a list (``tcp://127.0.0.1:1;0.0.0.0:2``) is
loopback only when every element is.
"""
from __future__ import annotations

import logging
import re
from typing import Any, Mapping

from edge.config.credentials import load_curve_keys
from edge.config.publish import endpoint_elements
from edge.errors import ConfigError
from edge.link import allowlist

logger = logging.getLogger(__name__)

_LOCAL = re.compile(r"^(ipc|inproc)://|^tcp://(127\.\d+\.\d+\.\d+|localhost|\[::1\]|::1|lo)(:[^;]*)?$", re.I)


def is_loopback(endpoint: str) -> bool:
    """Whether binding ``endpoint`` keeps it on this machine (tcp on 127.x/::1/localhost/lo, ipc, inproc):
    every element of a ``tcp://a;b`` list must be."""
    return all(_LOCAL.match(element) for element in endpoint_elements(endpoint))


def check_plaintext(endpoints: Mapping[str, str | None], *, insecure: bool) -> None:
    """Refuse plaintext on a network-facing endpoint unless ``insecure``; warn about plaintext in any case.

    Args:
        endpoints: What each endpoint is (``"publish.endpoint"``) -> the endpoint (``None``: not used).
        insecure: ``--insecure`` was given.

    Raises:
        ConfigError: a non-loopback endpoint without ``insecure`` (names the field and the endpoint).
    """
    for what, endpoint in endpoints.items():
        if endpoint and not is_loopback(endpoint) and not insecure:
            raise ConfigError(f"{what} '{endpoint}' is not loopback but publish.curve is null: anyone on the "
                              "network could read and forge labels; configure publish.curve keys, or pass "
                              "--insecure to accept plaintext")
    logger.warning("publish.curve is null: labels and snapshots are sent in PLAINTEXT, unauthenticated, on %s%s",
                   ", ".join(e for e in endpoints.values() if e), " (--insecure)" if insecure else "")


def check_link(publish: Any, *, insecure: bool) -> str:
    """What ``gemsight-edge check`` says about the link: keys and allow-list readable, plaintext allowed.

    Args:
        publish: The config's ``publish`` section (:class:`edge.config.device.PublishConfig`).
        insecure: ``--insecure`` was given.

    Returns:
        One line for people, e.g. ``link: CURVE, 2 allowed client(s) (kiosk-1, kiosk-2)``.

    Raises:
        ConfigError: an unreadable key or allow-list, or plaintext on a non-loopback endpoint.
    """
    if publish.curve is None:
        check_plaintext({"publish.endpoint": publish.endpoint, "publish.snapshot_endpoint": publish.snapshot_endpoint},
                        insecure=insecure)
        return "link: PLAINTEXT (publish.curve: null)"
    load_curve_keys(publish.curve.server_secret_key, "publish.curve.server_secret_key", need_secret=True)
    names = allowlist.AllowList(publish.curve.allowed_clients).names
    return f"link: CURVE, {len(names)} allowed client(s)" + (f" ({', '.join(names)})" if names else "")
