"""The kiosk's web page and JSON API (Starlette + Jinja2 templates, live updates by server-sent events).

Every route but ``/healthz``, ``/login`` and ``/static`` needs a login. Pages redirect to the login
form; the API answers 401. Every POST must carry the session's CSRF token (form field ``csrf`` or
header ``X-CSRF-Token``); actions that change something need the ``manager`` role. Refusals are
one line of JSON (``{"error": ...}``) on the API and a short page elsewhere; the kiosk keeps serving.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from kiosk.auth import Authenticator, LoginRefused, csrf_ok, new_csrf_token, session_secret
from kiosk.counts import to_csv
from kiosk.engine import ActionError
from kiosk.hub import sse
from kiosk.service import Kiosk
from kiosk.web_states import states_routes

logger = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
COOKIE = "gemsight_kiosk"
HEADERS = {
    "content-security-policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "x-content-type-options": "nosniff", "x-frame-options": "DENY", "referrer-policy": "no-referrer",
}


class SecurityHeaders:
    """Adds the headers above to every response (a plain ASGI middleware: streaming stays streaming)."""

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


class Refused(Exception):
    """A request refused with ``status`` and a one-line message."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def create_app(kiosk: Kiosk, *, stop_kiosk: bool = False) -> Starlette:
    """The ASGI app of ``kiosk`` (the caller runs it with uvicorn).

    Args:
        kiosk: The running kiosk.
        stop_kiosk: Stop the kiosk when the server shuts down (``gemsight-kiosk run``: uvicorn
            re-raises SIGTERM after its graceful shutdown, so later clean-up would never run).
    """
    cfg = kiosk.config
    auth = Authenticator(kiosk.history, cfg.web.login_attempts, cfg.web.login_window_s)
    templates = Jinja2Templates(directory=str(resources.files("kiosk") / "templates"))
    templates.env.filters["ts"] = lambda t: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else ""
    max_age = int(cfg.web.session_hours * 3600)

    def user(request: Request) -> dict[str, str] | None:
        s = request.session
        if not s.get("user") or time.time() - float(s.get("t", 0)) >= max_age:
            return None
        if "checked" not in request.scope:     # the role as it is now: a removed or demoted user loses it at once
            row = kiosk.history.user(s["user"])
            request.scope["checked"] = row["role"] if row else None
        role = request.scope["checked"]
        return {"name": s["user"], "role": role, "csrf": s["csrf"]} if role else None

    def api(request: Request) -> bool:
        return request.url.path.startswith("/api/")

    def refuse(request: Request, exc: Refused) -> Response:
        if api(request) or "application/json" in request.headers.get("accept", ""):
            return JSONResponse({"error": exc.message}, exc.status, headers=exc.headers)
        return templates.TemplateResponse(request, "error.html", {"message": exc.message, "user": user(request),
                                                                  "store": cfg.store}, exc.status, headers=exc.headers)

    def need_login(request: Request) -> dict[str, str]:
        u = user(request)
        if u is None:
            raise Refused(401, "login required")
        return u

    async def posted(request: Request, action: str | None) -> tuple[dict[str, str], dict[str, Any]]:
        """Login, body size, CSRF token and role of a POST; returns the user and the fields sent."""
        u = need_login(request)
        if int(request.headers.get("content-length") or 0) > MAX_BODY:
            raise Refused(413, f"request body over {MAX_BODY} bytes")
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                data = await request.json()
            except ValueError:
                raise Refused(400, "request body is not valid JSON") from None
            if not isinstance(data, dict):
                raise Refused(400, "request body must be a JSON object")
        else:
            data = dict(await request.form())
        if not csrf_ok(u["csrf"], request.headers.get("x-csrf-token") or data.get("csrf")):
            logger.warning("POST %s by %s refused: missing or wrong CSRF token", request.url.path, u["name"])
            raise Refused(403, "missing or wrong CSRF token (reload the page)")
        if action and u["role"] != "manager":
            logger.warning("%s (viewer) tried to %s", u["name"], action)
            raise Refused(403, f"the manager role is needed to {action}")
        return u, data

    def guarded(handler: Any) -> Any:
        async def wrapper(request: Request) -> Response:
            try:
                return await handler(request)
            except Refused as exc:
                if exc.status == 401 and not api(request):
                    return RedirectResponse("/login", 303)
                return refuse(request, exc)
            except ActionError as exc:
                return refuse(request, Refused(400, str(exc)))
        return wrapper

    def page(request: Request, name: str, **ctx: Any) -> Response:
        return templates.TemplateResponse(request, name, {"user": user(request), "store": cfg.store, **ctx})

    # -- login ---------------------------------------------------------------------------------------
    async def login_form(request: Request) -> Response:
        request.session.setdefault("csrf", new_csrf_token())
        return page(request, "login.html", csrf=request.session["csrf"], error=None)

    async def login(request: Request) -> Response:
        if int(request.headers.get("content-length") or 0) > MAX_BODY:
            raise Refused(413, f"request body over {MAX_BODY} bytes")
        form = await request.form()
        csrf = request.session.get("csrf")
        if not csrf_ok(csrf, form.get("csrf")):
            raise Refused(403, "missing or wrong CSRF token (reload the page)")
        name, password = str(form.get("user", "")), str(form.get("password", ""))
        client = request.client.host if request.client else "?"
        try:
            role = await asyncio.to_thread(auth.login, name, password, client)   # argon2 takes ~50 ms
        except LoginRefused as exc:
            status = 429 if exc.retry_after else 401
            headers = {"retry-after": str(int(exc.retry_after) + 1)} if exc.retry_after else None
            return templates.TemplateResponse(request, "login.html", {"user": None, "store": cfg.store, "csrf": csrf,
                                                                      "error": str(exc)}, status, headers=headers)
        request.session.clear()
        request.session.update(user=name, role=role, csrf=new_csrf_token(), t=time.time())
        kiosk.history.audit(time.time(), name, "login", {"from": client})
        return RedirectResponse("/", 303)

    async def logout(request: Request) -> Response:
        await posted(request, None)
        request.session.clear()
        return RedirectResponse("/login", 303)

    # -- pages ---------------------------------------------------------------------------------------
    async def store(request: Request) -> Response:
        u = need_login(request)
        return page(request, "store.html", state=kiosk.state(), csrf=u["csrf"])

    async def incidents_page(request: Request) -> Response:
        u = need_login(request)
        return page(request, "incidents.html", open=kiosk.incidents(), recent=kiosk.history.incidents(limit=200),
                    csrf=u["csrf"])

    async def counts_page(request: Request) -> Response:
        u = need_login(request)
        return page(request, "counts.html", counts=kiosk.history.counts(), csrf=u["csrf"])

    def _count(request: Request) -> dict[str, Any]:
        row = kiosk.history.count(int(request.path_params["count_id"]))
        if row is None:
            raise Refused(404, f"no count {request.path_params['count_id']}")
        return row

    async def count_page(request: Request) -> Response:
        need_login(request)
        return page(request, "count.html", count=_count(request))

    async def count_csv(request: Request) -> Response:
        need_login(request)
        row = _count(request)
        text = to_csv(row["report"], {"store": cfg.store, "count": row["id"], "kind": row["kind"], "user": row["user"],
                                      "time": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(row["ts"])),
                                      "sha256": row["digest"]})
        return PlainTextResponse(text, media_type="text/csv", headers={
            "content-disposition": f'attachment; filename="count-{row["id"]}.csv"'})

    async def history_page(request: Request) -> Response:
        need_login(request)
        return page(request, "history.html", changes=kiosk.history.slot_changes(300),
                    edits=kiosk.history.planogram_edits(100), audit=kiosk.history.audit_rows(100))

    # -- actions (pages and API) ---------------------------------------------------------------------
    async def acknowledge(request: Request) -> Response:
        u, data = await posted(request, "acknowledge incidents")
        inc = kiosk.acknowledge(int(request.path_params["incident_id"]), u["name"], str(data.get("note", "")))
        return JSONResponse(inc) if api(request) else RedirectResponse("/incidents", 303)

    async def planogram(request: Request) -> Response:
        u, data = await posted(request, "edit the planogram")
        key = tuple(str(data.get(k, "")) for k in ("device", "camera", "slot"))
        slot = kiosk.set_expected(key, str(data.get("expected", "")), u["name"])   # type: ignore[arg-type]
        return JSONResponse(slot) if api(request) else RedirectResponse("/", 303)

    async def count_now(request: Request) -> Response:
        u, _ = await posted(request, "run a count")
        count_id = await asyncio.to_thread(kiosk.run_count, u["name"])
        if api(request):
            return JSONResponse(kiosk.history.count(count_id))
        return RedirectResponse(f"/counts/{count_id}", 303)

    # -- API -----------------------------------------------------------------------------------------
    async def api_state(request: Request) -> Response:
        need_login(request)
        return JSONResponse(kiosk.state())

    async def api_incidents(request: Request) -> Response:
        need_login(request)
        return JSONResponse({"open": kiosk.incidents(), "recent": kiosk.history.incidents(limit=100)})

    async def api_counts(request: Request) -> Response:
        need_login(request)
        return JSONResponse({"counts": kiosk.history.counts()})

    async def api_count(request: Request) -> Response:
        need_login(request)
        return JSONResponse(_count(request))

    async def api_events(request: Request) -> Response:
        u = need_login(request)
        hello = sse("hello", {"user": u["name"], "ts": time.time()})
        return StreamingResponse(kiosk.hub.stream(hello), media_type="text/event-stream",
                                 headers={"x-accel-buffering": "no"})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True, "store": cfg.store, "sse_clients": kiosk.hub.clients})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        kiosk.hub.bind(asyncio.get_running_loop())
        yield
        kiosk.hub.close_all()
        if stop_kiosk:
            kiosk.stop()

    g = guarded
    routes = [
        Route("/healthz", healthz),
        Route("/login", g(login_form), methods=["GET"]), Route("/login", g(login), methods=["POST"]),
        Route("/logout", g(logout), methods=["POST"]),
        Route("/", g(store)), Route("/incidents", g(incidents_page)), Route("/counts", g(counts_page)),
        Route("/counts", g(count_now), methods=["POST"]), Route("/counts/{count_id:int}", g(count_page)),
        Route("/counts/{count_id:int}.csv", g(count_csv)), Route("/history", g(history_page)),
        Route("/incidents/{incident_id:int}/ack", g(acknowledge), methods=["POST"]),
        Route("/planogram", g(planogram), methods=["POST"]),
        Route("/api/state", g(api_state)), Route("/api/incidents", g(api_incidents)),
        Route("/api/incidents/{incident_id:int}/ack", g(acknowledge), methods=["POST"]),
        Route("/api/counts", g(api_counts)), Route("/api/counts", g(count_now), methods=["POST"]),
        Route("/api/counts/{count_id:int}", g(api_count)), Route("/api/counts/{count_id:int}.csv", g(count_csv)),
        Route("/api/planogram", g(planogram), methods=["POST"]), Route("/api/events", g(api_events)),
        Mount("/static", StaticFiles(directory=str(resources.files("kiosk") / "static")), name="static"),
    ]
    routes += states_routes(kiosk, need_login=need_login, posted=posted, guard=g, page=page, refused=Refused,
                            templates=templates)
    middleware = [Middleware(SecurityHeaders),
                  Middleware(SessionMiddleware, secret_key=session_secret(cfg.state_dir), session_cookie=COOKIE,
                             max_age=max_age, same_site="strict", https_only=cfg.web.secure_cookie)]
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
