"""The chain's page and API (Starlette + Jinja2, the kiosk's login, sessions and CSRF tokens).

Every route but ``/healthz``, ``/login`` and ``/static`` needs a login; pages redirect to the login
form, the API and the CSV export answer 401. A regional manager's every query is limited to their
stores (:func:`hq.users.scope`); the intake counters are for admins.
"""
from __future__ import annotations

import asyncio
import csv
import io
import logging
import time
from importlib import resources
from typing import Any, Callable

import psycopg
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from hq import queries
from hq.config import HqConfig
from hq.users import Users, scope
from kiosk.auth import Authenticator, LoginRefused, csrf_ok, new_csrf_token, session_secret
from kiosk.web.guard import BodyLimit, SecurityHeaders

logger = logging.getLogger(__name__)

COOKIE = "gemsight_hq"
EXPORTS = ("incidents", "devices-down", "versions", "counts", "stores")


def chain_view(conn, user: dict[str, Any], cfg: HqConfig, now: float) -> dict[str, Any]:
    """Everything the chain page shows to ``user``."""
    sc, down = scope(user), cfg.device_down_after_s
    view = {"stores": queries.stores(conn, sc, now, down), "incidents": queries.open_incidents(conn, sc, now),
            "devices_down": queries.devices_down(conn, sc, now, down), "versions": queries.model_versions(conn, sc),
            "version_summary": queries.version_summary(conn, sc), "counts": queries.opening_closing(conn, sc),
            "now": now}
    if user["role"] == "admin":
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

    def who(request: Request) -> dict[str, Any] | None:
        s = request.session
        if not s.get("user") or time.time() - float(s.get("t", 0)) >= max_age:
            return None
        row = users.user(s["user"])           # the role and stores as they are now
        return {**row, "csrf": s["csrf"]} if row else None

    async def view_for(request: Request) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        def load() -> tuple:
            u = who(request)
            if u is None:
                return None, None
            with psycopg.connect(dsn, connect_timeout=5) as conn:
                return u, chain_view(conn, u, cfg, clock())
        return await asyncio.to_thread(load)

    def unavailable(exc: Exception) -> Response:
        logger.error("hq page: database unavailable: %s", " ".join(str(exc).split()))
        return JSONResponse({"error": "the chain's database is unavailable; try again shortly"}, 503)

    async def page(request: Request) -> Response:
        try:
            u, view = await view_for(request)
        except psycopg.OperationalError as exc:
            return unavailable(exc)
        if u is None:
            return RedirectResponse("/login", 303)
        return templates.TemplateResponse(request, "chain.html", {"user": u, "csrf": u["csrf"], **view})

    async def api_chain(request: Request) -> Response:
        try:
            u, view = await view_for(request)
        except psycopg.OperationalError as exc:
            return unavailable(exc)
        if u is None:
            return JSONResponse({"error": "login required"}, 401)
        return JSONResponse(view)

    async def export(request: Request) -> Response:
        what = request.path_params["what"]
        if what not in EXPORTS:
            return JSONResponse({"error": f"no export {what!r} (one of {list(EXPORTS)})"}, 404)
        try:
            u, view = await view_for(request)
        except psycopg.OperationalError as exc:
            return unavailable(exc)
        if u is None:
            return JSONResponse({"error": "login required"}, 401)
        return PlainTextResponse(to_csv(export_rows(view, what)), media_type="text/csv", headers={
            "content-disposition": f'attachment; filename="chain-{what}.csv"'})

    async def login_form(request: Request) -> Response:
        request.session.setdefault("csrf", new_csrf_token())
        return templates.TemplateResponse(request, "login.html", {"user": None, "csrf": request.session["csrf"],
                                                                  "error": None})

    async def login(request: Request) -> Response:
        form = await request.form()
        csrf = request.session.get("csrf")
        if not csrf_ok(csrf, form.get("csrf")):
            return JSONResponse({"error": "missing or wrong CSRF token (reload the page)"}, 403)
        name, password = str(form.get("user", "")), str(form.get("password", ""))
        client = request.client.host if request.client else "?"
        try:
            await asyncio.to_thread(auth.login, name, password, client)
        except LoginRefused as exc:
            status = 429 if exc.retry_after else 401
            return templates.TemplateResponse(request, "login.html", {"user": None, "csrf": csrf, "error": str(exc)},
                                              status)
        except psycopg.OperationalError as exc:
            return unavailable(exc)
        request.session.clear()
        request.session.update(user=name, csrf=new_csrf_token(), t=time.time())
        logger.info("hq: %s logged in from %s", name, client)
        return RedirectResponse("/", 303)

    async def logout(request: Request) -> Response:
        form = await request.form()
        if not csrf_ok(request.session.get("csrf"), form.get("csrf")):
            return JSONResponse({"error": "missing or wrong CSRF token (reload the page)"}, 403)
        request.session.clear()
        return RedirectResponse("/login", 303)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    routes = [
        Route("/healthz", healthz), Route("/", page), Route("/api/chain", api_chain),
        Route("/export/{what}.csv", export),
        Route("/login", login_form, methods=["GET"]), Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(resources.files("kiosk") / "static")), name="static"),
    ]
    # The kiosk's body limit counts bytes (a chunked body too) before any handler reads a form.
    middleware = [Middleware(SecurityHeaders), Middleware(BodyLimit),
                  Middleware(SessionMiddleware, secret_key=session_secret(cfg.state_dir), session_cookie=COOKIE,
                             max_age=max_age, same_site="strict", https_only=cfg.web.secure_cookie)]
    return Starlette(routes=routes, middleware=middleware)
