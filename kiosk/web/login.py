"""Logging in and out, and changing one's own password (every one of them ends or starts a session)."""
from __future__ import annotations

import asyncio
import secrets

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from kiosk.auth import LoginRefused, csrf_ok, new_csrf_token, set_password
from kiosk.web.guard import COOKIE, Refused, action, client_address, page, read_fields

SCREEN_DELAY_S = 1.0


async def login_form(request: Request) -> Response:
    request.session.setdefault("csrf", new_csrf_token())
    return page(request, "login.html", csrf=request.session["csrf"], error=None)


async def login(request: Request) -> Response:
    state = request.app.state
    kiosk = state.kiosk
    form = await read_fields(request)
    csrf = request.session.get("csrf")
    if not csrf_ok(csrf, form.get("csrf")):
        raise Refused(403, "missing or wrong CSRF token (reload the page)")
    name, password = str(form.get("user", ""))[:200], str(form.get("password", ""))
    client, screen = client_address(request)
    try:
        role = await asyncio.to_thread(state.auth.login, name, password, client, screen=screen)  # argon2: ~50 ms
    except LoginRefused as exc:
        if screen and state.auth.limited(name, client):
            await asyncio.sleep(SCREEN_DELAY_S)    # the screen is never locked out, only slowed down
        status = 429 if exc.retry_after else 401
        response = page(request, "login.html", status, csrf=csrf, error=str(exc))
        if exc.retry_after:
            response.headers["retry-after"] = str(int(exc.retry_after) + 1)
        return response
    now = kiosk.clock()
    max_age = int(kiosk.config.web.session_hours * 3600)
    token = secrets.token_urlsafe(32)
    kiosk.history.add_session(token, name, new_csrf_token(), now, now + max_age, client)
    kiosk.history.audit(now, name, "login", {"from": client, "role": role})
    request.session.clear()
    response = RedirectResponse("/", 303)
    response.set_cookie(COOKIE, token, max_age=max_age, httponly=True, samesite="strict", secure=state.secure)
    return response


def _ended(to: str = "/login") -> Response:
    response = RedirectResponse(to, 303)
    response.delete_cookie(COOKIE, httponly=True, samesite="strict")
    return response


@action(None, scope=None)
async def logout(request: Request, data: dict) -> Response:
    kiosk = request.app.state.kiosk
    kiosk.history.end_session(request.user.token)
    kiosk.history.audit(kiosk.clock(), request.user.name, "logout", {})
    return _ended()


@action(None, scope=None)
async def change_password(request: Request, data: dict) -> Response:
    """One's own password: the current one first; every session of the user ends, this one too."""
    state = request.app.state
    client, screen = client_address(request)
    try:
        await asyncio.to_thread(state.auth.login, request.user.name, str(data.get("current", "")), client,
                                screen=screen)
    except LoginRefused as exc:
        raise Refused(403, f"current password: {exc}") from None
    set_password(state.kiosk.history, request.user.name, str(data.get("new", "")), state.kiosk.clock(),
                 request.user.name)
    return _ended()


async def account(request: Request) -> Response:
    return page(request, "account.html", csrf=request.user.csrf)


routes = [
    Route("/login", login_form, methods=["GET"]), Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]), Route("/account", account),
    Route("/account/password", change_password, methods=["POST"]),
    Route("/api/account/password", change_password, methods=["POST"]),
]
