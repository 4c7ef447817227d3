"""The kiosk config's web and notification parts (``web:`` and ``webhook:`` of ``kiosk.yaml``).

Off loopback the page must be served over TLS (``tls_cert``/``tls_key``) or started with
``--insecure``; see :func:`kiosk.cli.cmd_run`. The webhook signs each POST with HMAC-SHA256 when it
has a ``secret`` (a key file, read like the CURVE keys: a bare name from ``$CREDENTIALS_DIRECTORY``).
"""
from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from edge.validation import Strict

_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
LOOPBACK = ("127.0.0.1", "::1")


def check_hhmm(v: str) -> str:
    """Return ``v`` if it is a time ``HH:MM``, else raise ``ValueError``."""
    if not _HHMM.match(v):
        raise ValueError(f"{v!r} is not a time HH:MM (00:00-23:59)")
    return v


def _networks(v: tuple[str, ...]) -> tuple[str, ...]:
    for item in v:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or network (e.g. 10.0.0.5 or 10.0.0.0/24)") from None
    return v


class WebConfig(Strict):
    """The web page and API."""

    host: str = Field("127.0.0.1", description="Address to bind (loopback unless you mean it: off loopback "
                                               "the kiosk needs tls_cert and tls_key, or --insecure).")
    port: int = Field(8470, ge=0, le=65535, description="TCP port (0: any free port).")
    tls_cert: str | None = Field(None, description="PEM certificate (chain) to serve HTTPS with.")
    tls_key: str | None = Field(None, description="PEM private key of tls_cert.")
    session_hours: float = Field(12.0, gt=0, le=24 * 31, description="How long a login lasts.")
    secure_cookie: bool = Field(False, description="Send the session cookie over HTTPS only (behind a TLS "
                                                   "proxy; always on with tls_cert).")
    login_attempts: int = Field(5, ge=1, description="Failed logins allowed per account from one address ...")
    login_window_s: float = Field(300.0, gt=0, description="... within this many seconds (an address trying "
                                                           "many accounts, or an account tried from many "
                                                           "addresses, is allowed four times as many).")
    trusted_proxies: tuple[str, ...] = Field((), description="Reverse proxies whose X-Forwarded-For is "
                                                             "believed (addresses or networks); none by default.")
    screen: tuple[str, ...] = Field(LOOPBACK, description="Addresses of the kiosk's own screen: a right "
                                                          "password typed there is never refused by the "
                                                          "login limit.")

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        if v != "localhost":
            try:
                ipaddress.ip_address(v)
            except ValueError:
                raise ValueError(f"{v!r} is not an IP address (or localhost)") from None
        return v

    @field_validator("trusted_proxies", "screen")
    @classmethod
    def _nets(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _networks(v)

    @property
    def tls(self) -> bool:
        """Whether the kiosk serves HTTPS itself."""
        return bool(self.tls_cert and self.tls_key)

    @property
    def loopback(self) -> bool:
        """Whether the page listens on loopback only."""
        return self.host == "localhost" or ipaddress.ip_address(self.host).is_loopback


class QuietHours(Strict):
    """A daily span (store's time zone) when only smash-and-grab and camera alarms are sent."""

    start: str = Field(description="Start HH:MM.")
    end: str = Field(description="End HH:MM (may be past midnight: 20:00-07:00).")

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        return check_hhmm(v)

    def covers(self, hhmm: str) -> bool:
        """Whether the local time ``hhmm`` lies in the span."""
        if self.start <= self.end:
            return self.start <= hhmm < self.end
        return hhmm >= self.start or hhmm < self.end


class WebhookConfig(Strict):
    """Notifications: one POST per incident when it opens, when it escalates, and when it resolves."""

    url: str = Field(description="http(s) URL to POST to (e.g. an ntfy or Gotify relay, see docs/kiosk.md).")
    timeout_s: float = Field(3.0, gt=0, le=30, description="Per request.")
    secret: str | None = Field(None, description="Key file for the X-Gemsight-Signature HMAC-SHA256 header "
                                                 "(a bare name is read from $CREDENTIALS_DIRECTORY).")
    retries: int = Field(5, ge=0, le=20, description="Attempts after the first, with doubling back-off.")
    backoff_s: float = Field(2.0, gt=0, le=600, description="First back-off (doubles per attempt).")
    escalate_after_min: float | None = Field(15.0, gt=0, description="Send again, as an escalation, when an "
                                                                       "incident is still unacknowledged after "
                                                                       "this many minutes (null: never).")
    quiet_hours: QuietHours | None = Field(None, description="When only smash and camera alarms are sent "
                                                             "(the rest wait until the span ends).")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{v!r} is not an http(s) URL")
        return v
