"""Users (admin): list, add, disable or enable, reset a password, end sessions."""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kiosk.auth import ROLES, add_user, end_sessions, set_disabled, set_password
from kiosk.web.guard import JSON, Refused, action, back, page


def _admin(request: Request) -> None:
    if "admin" not in request.auth.scopes:
        raise Refused(403, "the admin role is needed to manage users")


async def users_page(request: Request) -> Response:
    _admin(request)
    return page(request, "users.html", users=request.app.state.kiosk.history.users(), roles=ROLES,
                csrf=request.user.csrf)


async def api_users(request: Request) -> Response:
    _admin(request)
    return JSON({"users": request.app.state.kiosk.history.users()})


@action("manage users", scope="admin")
async def add(request: Request, data: dict) -> Response:
    kiosk = request.app.state.kiosk
    name = str(data.get("name", ""))
    if kiosk.history.user(name) is not None:
        raise Refused(400, f"user {name!r} exists (reset the password instead)")
    add_user(kiosk.history, name, str(data.get("role", "")), str(data.get("password", "")), kiosk.clock(),
             by=request.user.name)
    return back(request, {"user": name}, "/users")


@action("manage users", scope="admin")
async def change(request: Request, data: dict) -> Response:
    """``disable``, ``enable``, ``password`` (reset) or ``end-sessions`` of ``/users/{name}/{verb}``."""
    kiosk = request.app.state.kiosk
    name, verb, now, by = request.path_params["name"], request.path_params["verb"], kiosk.clock(), request.user.name
    if verb in ("disable", "enable"):
        if name == by and verb == "disable":
            raise Refused(400, "you cannot disable yourself")
        set_disabled(kiosk.history, name, verb == "disable", now, by)
    elif verb == "password":
        set_password(kiosk.history, name, str(data.get("password", "")), now, by)
    elif verb == "end-sessions":
        end_sessions(kiosk.history, name, now, by)
    else:
        raise Refused(404, f"no user action {verb!r} (disable, enable, password, end-sessions)")
    return back(request, {"user": name, "done": verb}, "/users")


routes = [
    Route("/users", users_page), Route("/api/users", api_users),
    Route("/users", add, methods=["POST"]), Route("/api/users", add, methods=["POST"]),
    Route("/users/{name}/{verb}", change, methods=["POST"]),
    Route("/api/users/{name}/{verb}", change, methods=["POST"]),
]
