"""The chain's page and API (Starlette + Jinja2) on the kiosk's web guard, logins and sessions.

Every request passes through the kiosk's :mod:`kiosk.web.guard`, in its order: security headers, the
body limit (bytes counted, chunked too), the login form's signed cookie, the server-side session
(:class:`SessionBackend`: the session and the user's role and stores as they are now in PostgreSQL,
so a logged-out, disabled or replaced user is out at once) and the login check: pages go to the
login form, the API and the CSV export answer 401. Logins go through the kiosk's ``Authenticator``
(its limit per account and address, behind ``web.trusted_proxies`` too); logging out is a kiosk
``action`` (the session's CSRF token). A regional manager's every query is limited to their stores
(:func:`hq.users.scope`); the intake counters are for admins. Every refusal is one line (JSON on the
API and the export, a short page elsewhere); a database away answers 503.
"""
from __future__ import annotations

import asyncio
import csv
import io
import logging
import secrets
import time
from importlib import resources
from typing import Any, Callable

import psycopg
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, AuthenticationError
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from edge.errors import ConfigError
from hq import queries
from hq.config import HqConfig
from hq.users import ROLES, Users, scope
from kiosk.auth import Authenticator, LoginRefused, csrf_ok, new_csrf_token, session_secret
from kiosk.web.guard import (JSON, BodyLimit, KioskUser, Refused, RequireLogin, SecurityHeaders, action,
                             client_address, read_fields, wants_json)

logger = logging.getLogger(__name__)

COOKIE = "gemsight_hq"                 # not the kiosk's names: both may run on one host
LOGIN_COOKIE = "gemsight_hq_login"
EXPORTS = ("incidents", "devices-down", "versions", "counts", "stores")
API_PATHS = ("/export/",)              # answer 401 and one line of JSON, as /api/ does
UNAVAILABLE = "the chain's database is unavailable; try again shortly"


class HqUser(KioskUser):
    """A logged-in user of headquarters: the kiosk's, with the stores a regional manager may see."""

    def __init__(self, name: str, role: str, csrf: str, token: str, stores: list[str]) -> None:
        super().__init__(name, role, csrf, token)
        self.stores = list(stores or [])


class DatabaseAway(AuthenticationError):
    """The session could not be looked up (PostgreSQL unreachable)."""


class SessionBackend(AuthenticationBackend):
    """The session cookie, looked up in PostgreSQL on every request (``app.state.users``)."""

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, HqUser] | None:
        token = conn.cookies.get(COOKIE)
        if not token or len(token) > 128:
            return None
        state = conn.app.state
        try:
            row = await asyncio.to_thread(state.users.session, token, state.clock())
        except psycopg.OperationalError as exc:
            raise DatabaseAway(" ".join(str(exc).split())) from exc
        if row is None or row["role"] not in ROLES:
            return None
        return (AuthCredentials(["authenticated", row["role"]]),
                HqUser(row["user"], row["role"], row["csrf"], token, row["stores"]))


def _api(scope_: dict) -> bool:
    return wants_json(scope_) or scope_["path"].startswith(API_PATHS)


def _unavailable(conn: HTTPConnection, exc: Exception) -> Response:
    logger.error("hq page: database unavailable: %s", " ".join(str(exc).split()))
    return JSON({"error": UNAVAILABLE}, 503)


def chain_view(conn, user: HqUser, cfg: HqConfig, now: float) -> dict[str, Any]:
    """Everything the chain page shows to ``user``."""
    sc, down = scope(user), cfg.device_down_after_s
    view = {"stores": queries.stores(conn, sc, now, down), "incidents": queries.open_incidents(conn, sc, now),
            "devices_down": queries.devices_down(conn, sc, now, down), "versions": queries.model_versions(conn, sc),
            "version_summary": queries.version_summary(conn, sc), "counts": queries.opening_closing(conn, sc),
            "now": now}
    if user.role == "admin":
        view["intake"] = queries.intake(conn)
    return view


def export_rows(view: dict[str, Any], what: str) -> list[dict[str, Any]]:
    key = {"incidents": "incidents", "devices-down": "devices_down", "versions": "versions", "counts": "counts",
           "stores": "stores"}[what]
    return view[key]


def to_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    if rows:
        w = csv.DictWriter(out, fieldnames=list(rows[0]), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()})
    return out.getvalue()


def create_app(cfg: HqConfig, dsn: str, *, clock: Callable[[], float] = time.time) -> Starlette:
    """The ASGI app of headquarters' page (the caller runs it with uvicorn)."""
    users = Users(dsn)
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    auth = Authenticator(users, cfg.web.login_attempts, cfg.web.login_window_s)
    templates = Jinja2Templates(directory=str(resources.files("hq") / "templates"))
    templates.env.filters["ts"] = lambda t: time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else ""
    templates.env.filters["age"] = lambda s: (f"{s / 86400:.1f} d" if s >= 86400 else f"{s / 3600:.1f} h"
                                              if s >= 3600 else f"{s / 60:.0f} min")
    max_age = int(cfg.web.session_hours * 3600)
    secure = cfg.web.tls or cfg.web.secure_cookie

    def refuse(request: Request, exc: Exception) -> Response:
        """Every refusal as one line: JSON on the API and export, a short page elsewhere (a page's 401: login)."""
        if isinstance(exc, Refused):
            status, message, headers = exc.status, exc.message, exc.headers
        elif isinstance(exc, HTTPException):
            status, message, headers = exc.status_code, str(exc.detail), dict(exc.headers or {})
        elif isinstance(exc, psycopg.OperationalError):
            return _unavailable(request, exc)
        elif isinstance(exc, ConfigError):
            status, message, headers = 400, str(exc), {}
        else:
            logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
            status, message, headers = 500, f"internal error ({type(exc).__name__}); headquarters keeps running", {}
        message = (message.splitlines() or [""])[0]
        if status == 401 and not _api(request.scope):
            return RedirectResponse("/login", 303)
        if _api(request.scope):
            return JSON({"error": message}, status, headers=headers)
        user = request.scope.get("user")
        return templates.TemplateResponse(request, "error.html", {
            "user": user if user is not None and user.is_authenticated else None, "message": message},
            status, headers=headers)

    async def view_for(request: Request) -> dict[str, Any]:
        def load() -> dict[str, Any]:
            with psycopg.connect(dsn, connect_timeout=5) as conn:
                return chain_view(conn, request.user, cfg, clock())
        return await asyncio.to_thread(load)

    async def page(request: Request) -> Response:
        view = await view_for(request)
        return templates.TemplateResponse(request, "chain.html", {"user": request.user, **view})

    async def api_chain(request: Request) -> Response:
        return JSON(await view_for(request))

    async def export(request: Request) -> Response:
        what = request.path_params["what"]
        if what not in EXPORTS:
            raise Refused(404, f"no export {what!r} (one of {list(EXPORTS)})")
        view = await view_for(request)
        return PlainTextResponse(to_csv(export_rows(view, what)), media_type="text/csv", headers={
            "content-disposition": f'attachment; filename="chain-{what}.csv"'})

    def login_page(request: Request, csrf: str, error: str | None, status: int = 200) -> Response:
        return templates.TemplateResponse(request, "login.html", {"user": None, "csrf": csrf, "error": error},
                                          status)

    async def login_form(request: Request) -> Response:
        request.session.setdefault("csrf", new_csrf_token())
        return login_page(request, request.session["csrf"], None)

    async def login(request: Request) -> Response:
        form = await read_fields(request)
        csrf = request.session.get("csrf")
        if not csrf_ok(csrf, form.get("csrf")):
            raise Refused(403, "missing or wrong CSRF token (reload the page)")
        name, password = str(form.get("user", ""))[:200], str(form.get("password", ""))
        client, _ = client_address(request, cfg.web)     # headquarters has no screen of its own
        try:
            await asyncio.to_thread(auth.login, name, password, client)
        except LoginRefused as exc:
            response = login_page(request, csrf, str(exc), 429 if exc.retry_after else 401)
            if exc.retry_after:
                response.headers["retry-after"] = str(int(exc.retry_after) + 1)
            return response
        now, token = clock(), secrets.token_urlsafe(32)
        await asyncio.to_thread(users.add_session, token, name, new_csrf_token(), now, now + max_age, client)
        logger.info("hq: %s logged in from %s", name, client)
        request.session.clear()
        response = RedirectResponse("/", 303)
        response.set_cookie(COOKIE, token, max_age=max_age, httponly=True, samesite="strict", secure=secure)
        return response

    @action(None, scope=None)
    async def logout(request: Request, data: dict) -> Response:
        await asyncio.to_thread(users.end_session, request.user.token)
        logger.info("hq: %s logged out", request.user.name)
        response = RedirectResponse("/login", 303)
        response.delete_cookie(COOKIE, httponly=True, samesite="strict")
        return response

    async def healthz(request: Request) -> Response:
        return JSON({"ok": True})

    routes = [
        Route("/healthz", healthz), Route("/", page), Route("/api/chain", api_chain),
        Route("/export/{what}.csv", export),
        Route("/login", login_form, methods=["GET"]), Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(resources.files("kiosk") / "static")), name="static"),
    ]
    middleware = [Middleware(SecurityHeaders), Middleware(BodyLimit),
                  Middleware(SessionMiddleware, secret_key=session_secret(cfg.state_dir), session_cookie=LOGIN_COOKIE,
                             max_age=3600, same_site="strict", https_only=secure),
                  Middleware(AuthenticationMiddleware, backend=SessionBackend(), on_error=_unavailable),
                  Middleware(RequireLogin, api_paths=API_PATHS)]
    handlers = {Refused: refuse, HTTPException: refuse, ConfigError: refuse, psycopg.OperationalError: refuse,
                Exception: refuse}
    app = Starlette(routes=routes, middleware=middleware, exception_handlers=handlers)
    app.state.users, app.state.clock = users, clock
    return app
