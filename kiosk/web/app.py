"""The ASGI app: middleware in order, the routers, and one exception handler per kind of refusal."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from importlib import resources

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from edge.errors import ConfigError
from kiosk.auth import Authenticator, session_secret
from kiosk.history import HistoryError
from kiosk.service import Kiosk
from kiosk.web import cases, counts, events, history, incidents, login, states, users
from kiosk.web.guard import (JSON, LOGIN_COOKIE, BodyLimit, Refused, RequireLogin, SecurityHeaders, SessionBackend,
                             page, wants_json)
from kiosk.words import LEGEND, when

logger = logging.getLogger(__name__)


def refuse(request: Request, exc: Exception) -> Response:
    """Every refusal as one line: JSON on the API, a short page elsewhere (a page's 401 goes to the login)."""
    if isinstance(exc, Refused):
        status, message, headers = exc.status, exc.message, exc.headers
    elif isinstance(exc, HTTPException):
        status, message, headers = exc.status_code, str(exc.detail), dict(exc.headers or {})
    elif isinstance(exc, HistoryError):
        request.app.state.kiosk.report_fault(f"{request.method} {request.url.path}", exc)
        status, message, headers = 503, f"the history could not be read or written: {exc}", {}
    elif isinstance(exc, ConfigError):       # ActionError and the user functions' refusals
        status, message, headers = 400, str(exc), {}
    else:
        logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        status, message, headers = 500, f"internal error ({type(exc).__name__}); the kiosk keeps running", {}
    message = (message.splitlines() or [""])[0]
    if status == 401 and not wants_json(request.scope):
        return RedirectResponse("/login", 303)
    if wants_json(request.scope):
        return JSON({"error": message}, status, headers=headers)
    return page(request, "error.html", status, message=message)


def create_app(kiosk: Kiosk, *, stop_kiosk: bool = False) -> Starlette:
    """The ASGI app of ``kiosk`` (the caller runs it with uvicorn).

    Args:
        kiosk: The running kiosk.
        stop_kiosk: Stop the kiosk when the server shuts down (``gemsight-kiosk run``: uvicorn
            re-raises SIGTERM after its graceful shutdown, so later clean-up would never run).
    """
    cfg = kiosk.config
    templates = Jinja2Templates(directory=str(resources.files("kiosk") / "templates"))
    tz = cfg.hours.timezone if cfg.hours else None
    templates.env.filters["ts"] = lambda t: when(t, tz)
    templates.env.globals["legend"] = LEGEND
    templates.env.globals["evidence_of"] = states.evidence_lookup(kiosk)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        kiosk.hub.bind(asyncio.get_running_loop())
        yield
        kiosk.hub.close_all()
        if stop_kiosk:
            kiosk.stop()

    secure = cfg.web.tls or cfg.web.secure_cookie
    routes = [*events.routes, *login.routes, *incidents.routes, *cases.routes, *counts.routes, *history.routes,
              *users.routes, *states.routes,
              Mount("/static", StaticFiles(directory=str(resources.files("kiosk") / "static")), name="static")]
    middleware = [Middleware(SecurityHeaders), Middleware(BodyLimit),
                  Middleware(SessionMiddleware, secret_key=session_secret(cfg.state_dir), session_cookie=LOGIN_COOKIE,
                             max_age=3600, same_site="strict", https_only=secure),
                  Middleware(AuthenticationMiddleware, backend=SessionBackend()), Middleware(RequireLogin)]
    handlers = {Refused: refuse, HTTPException: refuse, ConfigError: refuse, HistoryError: refuse, Exception: refuse}
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan, exception_handlers=handlers)
    app.state.kiosk, app.state.templates = kiosk, templates
    app.state.auth = Authenticator(kiosk.history, cfg.web.login_attempts, cfg.web.login_window_s)
    app.state.secure = secure
    return app
