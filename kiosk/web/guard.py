"""What every request passes through: headers, the body limit, the session, the login check, actions.

* :class:`SecurityHeaders` and :class:`BodyLimit` are plain ASGI middleware (streaming stays
  streaming). The limit refuses a ``Content-Length`` over it at once and counts the bytes of every
  other body (chunked too) as the app reads them, so no more than the limit is ever read, before
  any CSRF, role or form check.
* :class:`SessionBackend` reads the session cookie for Starlette's ``AuthenticationMiddleware``: the
  session and the user's role as they are now in the history (a logged-out, disabled or removed
  user is out at once).
* :class:`RequireLogin` sends everyone without a session to the login form (pages) or answers 401 (API),
  except on ``PUBLIC`` paths.
* :func:`action` wraps a POST handler: the fields sent (JSON object or form, every string checked),
  the session's CSRF token, the scope (role) the action needs.
"""
from __future__ import annotations

import functools
import ipaddress
import json
import logging
from typing import Any, Awaitable, Callable

from starlette.authentication import AuthCredentials, AuthenticationBackend, BaseUser
from starlette.convertors import Convertor, register_url_convertor
from starlette.datastructures import UploadFile
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from kiosk.auth import SCOPES, csrf_ok
from kiosk.words import text_problem

logger = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
#: Over the limit, up to this much more is read and dropped (not kept) so that the client, still
#: sending, gets the 413; a bigger body has its connection cut.
DRAIN_MAX = 4 << 20
#: Paths that take more (a piece's photo).
LARGE_BODIES = {"/api/slots/": 3 << 20, "/slots/": 3 << 20}
COOKIE = "gemsight_kiosk"
LOGIN_COOKIE = "gemsight_login"
PUBLIC = ("/healthz", "/login", "/static/")
HEADERS = {
    "content-security-policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "x-content-type-options": "nosniff", "x-frame-options": "DENY", "referrer-policy": "no-referrer",
}


class RowId(Convertor):
    """A path's row id: 1-18 digits (SQLite's integers stop at 2**63; longer is no row, so 404)."""

    regex = "[0-9]{1,18}"

    def convert(self, value: str) -> int:
        return int(value)

    def to_string(self, value: int) -> str:
        return str(value)


register_url_convertor("id", RowId())


class JSON(JSONResponse):
    """JSON with every non-ASCII character escaped: no text the kiosk holds can fail to encode."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":"), default=str).encode("ascii")


class Refused(Exception):
    """A request refused with ``status`` and a one-line message (turned into a response by the app)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class BodyTooLarge(Refused):
    """A request body over the limit (raised from the counted ``receive``)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over {limit} bytes", {"connection": "close"})


def wants_json(scope: dict) -> bool:
    """The API (``/api/...``) or a client asking for JSON."""
    if scope["path"].startswith("/api/"):
        return True
    return any(k == b"accept" and b"application/json" in v for k, v in scope.get("headers", []))


class SecurityHeaders:
    """Adds ``HEADERS`` (and ``cache-control: no-store`` off ``/static``) to every response."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.encode(), v.encode()) for k, v in HEADERS.items()]
                if not scope["path"].startswith("/static/"):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


class BodyLimit:
    """Refuses bodies over ``limit`` bytes (``LARGE_BODIES`` by path prefix), counting what is read."""

    def __init__(self, app: Any, limit: int = MAX_BODY) -> None:
        self.app, self.limit = app, limit

    def limit_for(self, path: str) -> int:
        return next((n for prefix, n in LARGE_BODIES.items() if path.startswith(prefix)), self.limit)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None and (not length.isdigit() or int(length) > limit):
            if length.isdigit() and int(length) <= limit + DRAIN_MAX:   # read and dropped: the client gets the 413
                message = {"more_body": True}
                while message.get("more_body"):
                    message = await receive()
            await self._refuse(scope, send, BodyTooLarge(limit))
            return
        seen, started = 0, False

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    drained = 0
                    while message.get("more_body") and drained < DRAIN_MAX:
                        message = await receive()
                        drained += len(message.get("body", b""))
                    raise BodyTooLarge(limit)
            return message

        async def watched(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge as exc:   # raised outside the app's exception handlers (a middleware read it)
            if not started:
                await self._refuse(scope, send, exc)

    async def _refuse(self, scope: dict, send: Any, exc: BodyTooLarge) -> None:
        logger.warning("%s %s refused: %s", scope["method"], scope["path"], exc.message)
        response = JSON({"error": exc.message}, 413, headers=exc.headers) if wants_json(scope) else \
            Response(f"<!doctype html><p class=error>{exc.message}</p>", 413, headers=exc.headers,
                     media_type="text/html")
        await response({**scope, "type": "http"}, _no_body, send)


async def _no_body() -> dict:
    return {"type": "http.request", "body": b"", "more_body": False}


class KioskUser(BaseUser):
    """A logged-in user: name, role, the session's CSRF token and its cookie token."""

    def __init__(self, name: str, role: str, csrf: str, token: str) -> None:
        self.name, self.role, self.csrf, self.token = name, role, csrf, token

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.name

    @property
    def manager(self) -> bool:
        """May act on the store (acknowledge, planogram, counts)."""
        return self.role in ("manager", "admin")

    @property
    def admin(self) -> bool:
        """May manage users."""
        return self.role == "admin"


class SessionBackend(AuthenticationBackend):
    """The session cookie, looked up in the history on every request."""

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, KioskUser] | None:
        token = conn.cookies.get(COOKIE)
        if not token or len(token) > 128:
            return None
        kiosk = conn.app.state.kiosk
        row = kiosk.history.session(token, kiosk.clock())
        if row is None or row["role"] not in SCOPES:
            return None
        return AuthCredentials(list(SCOPES[row["role"]])), KioskUser(row["user"], row["role"], row["csrf"], token)


class RequireLogin:
    """Everything but ``PUBLIC`` needs a session: pages go to the login form, the API (and ``api_paths``) 401."""

    def __init__(self, app: Any, api_paths: tuple[str, ...] = ()) -> None:
        self.app, self.api_paths = app, api_paths

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith(PUBLIC) or scope["user"].is_authenticated:
            await self.app(scope, receive, send)
            return
        if wants_json(scope) or scope["path"].startswith(self.api_paths):
            response: Response = JSON({"error": "login required"}, 401)
        else:
            response = RedirectResponse("/login", 303)
        await response(scope, receive, send)


def _in(address: str, networks: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(n, strict=False) for n in networks)


def client_address(request: Request, web: Any = None) -> tuple[str, bool]:
    """``(address, from the kiosk's screen)`` of a request (``web``: the kiosk's ``web`` config by default).

    ``X-Forwarded-For`` is believed only from ``web.trusted_proxies`` (the nearest hop that is not
    one of them is the client); a request that names a forwarded address is never the screen.
    """
    web = web or request.app.state.kiosk.config.web
    peer = request.client.host if request.client else "?"
    forwarded = request.headers.get("x-forwarded-for") or request.headers.get("forwarded")
    if forwarded and web.trusted_proxies and _in(peer, web.trusted_proxies):
        for hop in reversed([h.strip() for h in request.headers.get("x-forwarded-for", "").split(",")]):
            if _in(hop, ("0.0.0.0/0", "::/0")) and not _in(hop, web.trusted_proxies):
                return hop, False
    return peer, not forwarded and _in(peer, web.screen)


def _check_text(data: Any, where: str = "") -> None:
    if isinstance(data, str):
        problem = text_problem(data)
        if problem:
            raise Refused(400, f"field {where or 'body'!r} {problem}")
    elif isinstance(data, dict):
        for k, v in data.items():
            _check_text(str(k), "field name")
            _check_text(v, f"{where}.{k}" if where else str(k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            _check_text(v, f"{where}.{i}")


async def read_fields(request: Request) -> dict[str, Any]:
    """The fields of a POST: a JSON object or a form (files as :class:`UploadFile`); every string checked."""
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            data = json.loads(await request.body())
        except RecursionError:
            raise Refused(400, "request body is not valid JSON (nested too deeply)") from None
        except ValueError:
            raise Refused(400, "request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise Refused(400, "request body must be a JSON object")
    else:
        form = await request.form(max_files=1, max_fields=100)
        data = {k: v for k, v in form.multi_items()}
    _check_text({k: v for k, v in data.items() if not isinstance(v, UploadFile)})
    return data


Handler = Callable[[Request, dict[str, Any]], Awaitable[Response]]


Endpoint = Callable[[Request], Awaitable[Response]]


def action(what: str | None, scope: str | None = "manager") -> Callable[[Handler], Endpoint]:
    """A POST that changes something: its fields, the session's CSRF token, and ``scope`` to ``what``."""

    def wrap(handler: Handler) -> Endpoint:
        @functools.wraps(handler)
        async def run(request: Request) -> Response:
            data = await read_fields(request)
            user = request.user
            if not csrf_ok(user.csrf, request.headers.get("x-csrf-token") or data.get("csrf")):
                logger.warning("POST %s by %s refused: missing or wrong CSRF token", request.url.path, user.name)
                raise Refused(403, "missing or wrong CSRF token (reload the page)")
            if scope and scope not in request.auth.scopes:
                logger.warning("%s (%s) tried to %s", user.name, user.role, what)
                raise Refused(403, f"the {scope} role is needed to {what}")
            return await handler(request, data)
        return run
    return wrap


def page(request: Request, name: str, status: int = 200, **ctx: Any) -> Response:
    """A template with the store, the user (or ``None``) and the kiosk's health."""
    state = request.app.state
    user = request.scope.get("user")
    user = user if user is not None and user.is_authenticated else None
    return state.templates.TemplateResponse(request, name, {"user": user, "store": state.kiosk.config.store,
                                                            "health": state.kiosk.health(), **ctx}, status)


def back(request: Request, data: Any, to: str) -> Response:
    """The API answers ``data`` as JSON; a form post goes on to page ``to``."""
    return JSON(data) if wants_json(request.scope) else RedirectResponse(to, 303)
