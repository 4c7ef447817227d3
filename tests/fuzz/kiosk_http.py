"""The kiosk's HTTP routes as a fuzz target: a real kiosk (uvicorn on loopback, SQLite, a ZeroMQ device)
gets bodies (JSON mutated, nested deep, forms, raw bytes), Unicode (lone surrogates, NULs, bidi), form
fields and query strings, logged in as viewer, manager or admin or not at all, with the right, a wrong
or no CSRF token.

What must hold for every request: an answer (never a 500, never a hang); a refusal from the API is one
line of JSON ``{"error": ...}``; afterwards the feed and ticker threads still run and the kiosk's health
is ``ok`` (no silent thread death, no unhandled fault); every 200 cases the audit chain still verifies.
"""
from __future__ import annotations

import contextlib
import json
import re
import urllib.parse
from pathlib import Path
from typing import Any, Iterator

from hypothesis import strategies as st

from tests.fuzz.strategies import JSON_VALUES, byte_edits, deep, json_bytes, poisoned

ALLOWED = {200, 303, 400, 401, 403, 404, 405, 413, 429}
PASSWORD = "correct horse"
TEXT = poisoned(st.text(max_size=16)) | st.sampled_from(["ring", "Ring", "rnig", "sold", "case-01", "cam0", "r0c0",
                                                         "missing", "2026-12-04", "\ud800", "é\u202e", "1"])
NAMES = st.sampled_from(["victim", "nobody", "leo", "a b", "%00", "..", "x" * 80]) | TEXT.filter(bool)
BASES = {
    "ack": {"note": "shown to a customer"}, "planogram": {"device": "case-01", "camera": "cam0", "slot": "r0c0",
                                                         "expected": "ring"},
    "counts": {}, "users": {"name": "newbie", "role": "viewer", "password": "long enough"},
    "user": {"password": "long enough"}, "login": {"user": "leo", "password": "wrong one"},
    "piece": {"expected": "ring", "sku": "R-1042", "price": "1250.00"}, "sign": {"reviewed": "1"},
    "password": {"current": "not it", "new": "long enough"},
}
PHOTOS = st.sampled_from([b"\x89PNG\r\n\x1a\n" + b"\0" * 32, b"\xff\xd8\xff" + b"\0" * 32, b"MZ\x90", b""]) | \
    st.binary(max_size=64)


def _route(draw: st.DrawFn) -> tuple[str, str, str]:
    """``(method, path, base)``: a route of the kiosk with fuzzed path parameters and queries."""
    inc = draw(st.one_of(st.integers(-2, 40), st.just(2**70)))
    query = urllib.parse.urlencode({draw(st.sampled_from(["kind", "state", "device", "day", "limit", "x"])):
                                    draw(TEXT) for _ in range(draw(st.integers(0, 3)))}, errors="surrogatepass")
    name = urllib.parse.quote(draw(NAMES), safe="", errors="surrogatepass")
    verb = draw(st.sampled_from(["disable", "enable", "password", "end-sessions", "delete", "%ff"]))
    slot = draw(st.sampled_from(["r0c0", "r0c1", "r1c0", "r1c1"]) | st.just(name))
    return draw(st.sampled_from([
        ("POST", f"/api/incidents/{inc}/ack", "ack"), ("POST", f"/incidents/{inc}/ack", "ack"),
        ("POST", "/api/planogram", "planogram"), ("POST", "/planogram", "planogram"),
        ("POST", "/api/counts", "counts"), ("POST", "/counts", "counts"),
        ("POST", "/api/users", "users"), ("POST", f"/api/users/{name}/{verb}", "user"),
        ("POST", f"/users/{name}/{verb}", "user"), ("POST", "/login", "login"),
        ("GET", f"/api/incidents?{query}", ""), ("GET", f"/incidents?{query}", ""), ("GET", f"/history?{query}", ""),
        ("GET", f"/api/history?{query}", ""), ("GET", "/api/state", ""), ("GET", "/", ""),
        ("GET", f"/api/counts/{inc}", ""), ("GET", f"/counts/{inc}.csv", ""), ("GET", "/users", ""),
        ("GET", f"/static/{name}", ""), ("PUT", "/api/planogram", "planogram"), ("GET", f"/{name}", ""),
        ("POST", f"/api/slots/case-01/cam0/{slot}", "piece"), ("POST", f"/slots/case-01/cam0/{slot}", "piece"),
        ("GET", f"/slots/case-01/cam0/{slot}", ""), ("GET", f"/slots/case-01/{name}/{slot}/photo", ""),
        ("POST", f"/api/counts/{inc}/sign", "sign"), ("POST", "/api/account/password", "password"),
    ]))


def _form(fields: dict[str, Any]) -> bytes:
    return urllib.parse.urlencode({str(k): str(v) for k, v in fields.items()}, errors="surrogatepass").encode()


def _multipart(fields: dict[str, Any], photo: bytes) -> bytes:
    """A well-formed multipart/form-data body (boundary ``x``) with the fields and a ``photo`` file."""
    parts = [b'--x\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n'
             % (str(k).encode("utf-8", "surrogatepass"), str(v).encode("utf-8", "surrogatepass"))
             for k, v in fields.items()]
    parts.append(b'--x\r\nContent-Disposition: form-data; name="photo"; filename="p.png"\r\n'
                 b"Content-Type: image/png\r\n\r\n" + photo + b"\r\n")
    return b"".join(parts) + b"--x--\r\n"


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    method, path, base = _route(draw)
    fields = dict(BASES.get(base, {}))
    for _ in range(draw(st.integers(0, 3))):
        fields[draw(st.sampled_from([*fields, "csrf", "extra"]))] = draw(TEXT | JSON_VALUES)
    kind = draw(st.sampled_from(["json", "json", "form", "form", "multipart", "none", "text", "garbage"]))
    if kind == "json":
        body = draw(st.one_of(st.just(json.dumps(fields).encode()), json_bytes(fields), deep(b"[", b"]", 70_000)))
    elif kind == "form":
        body = draw(st.one_of(st.just(_form(fields)), byte_edits(_form(fields))))
    elif kind == "multipart":
        whole = _multipart(fields, draw(PHOTOS))
        body = draw(st.one_of(st.just(whole), byte_edits(whole)))
    else:
        body = draw(st.binary(max_size=200))
    ctypes = {"json": "application/json", "form": "application/x-www-form-urlencoded", "none": None,
              "multipart": "multipart/form-data; boundary=" + draw(st.sampled_from(["x", "x", "", "é", "a" * 300])),
              "text": "text/plain", "garbage": draw(st.sampled_from(["application/json; charset=bogus", "x/y", ";"]))}
    return {"method": method, "path": path, "body": body, "ctype": ctypes[kind],
            "who": draw(st.sampled_from(["mia", "leo", "ada", None])),
            "csrf": draw(st.sampled_from(["right", "right", "wrong", "none", "form"])),
            "accept": draw(st.sampled_from([None, "application/json", "text/html"]))}


@contextlib.contextmanager
def kiosk_http(workdir: Path) -> Iterator[tuple[st.SearchStrategy, Any]]:
    """The target: a served kiosk and its logged-in clients (see the module docstring)."""
    import logging  # noqa: PLC0415

    import httpx  # noqa: PLC0415

    from kiosk.auth import add_user  # noqa: PLC0415
    from kiosk.config import parse_config  # noqa: PLC0415
    from tests.kiosk.feeds import Served, SimDevice, config_dict, wait_for  # noqa: PLC0415

    slots = {"r0c0": "ring", "r0c1": "ring", "r1c0": "watch", "r1c1": "sold"}
    device = SimDevice()
    cfg = parse_config(config_dict(workdir, devices=[device.entry({"cam0": {"slots": slots}})],
                                   policies={"empty_grace_s": 0}, web={"login_attempts": 1000}))
    logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
    served = Served(cfg)
    kiosk = served.kiosk
    for name, role in (("mia", "manager"), ("leo", "viewer"), ("ada", "admin"), ("victim", "viewer")):
        add_user(kiosk.history, name, role, PASSWORD, 0.0)
    device.labels("cam0", {"r0c0": "ring", "r0c1": "empty", "r1c0": "ring", "r1c1": "empty"})
    wait_for(lambda: kiosk.incidents())
    sessions: dict[str | None, tuple[httpx.Client, str]] = {}
    for who in ("mia", "leo", "ada", None):
        c = httpx.Client(base_url=served.url, follow_redirects=False, timeout=10)
        token = re.search(r'name="csrf" value="([^"]+)"', c.get("/login").text).group(1)
        if who:
            c.post("/login", data={"user": who, "password": PASSWORD, "csrf": token})
            token = re.search(r'name="csrf" content="([^"]+)"', c.get("/").text).group(1)
        sessions[who] = (c, token)
    count = [0]

    def check(req: dict[str, Any]) -> str:
        c, token = sessions[req["who"]]
        headers = {}
        if req["ctype"] is not None:
            headers["content-type"] = req["ctype"].encode()    # raw bytes: non-ASCII boundaries too
        if req["accept"]:
            headers["accept"] = req["accept"]
        if req["csrf"] in ("right", "wrong"):
            headers["x-csrf-token"] = token if req["csrf"] == "right" else token[::-1]
        body = req["body"]
        if req["csrf"] == "form" and req["ctype"] and "urlencoded" in req["ctype"]:
            body += b"&csrf=" + token.encode()
        r = c.request(req["method"], req["path"], content=body if req["method"] != "GET" else None,
                      headers=headers)
        if r.status_code not in ALLOWED:
            raise AssertionError(f"{req['method']} {req['path'][:80]} answered {r.status_code}: {r.text[:300]!r}")
        if r.status_code >= 400 and r.headers.get("content-type", "").startswith("application/json"):
            error = r.json().get("error")
            if not isinstance(error, str) or not error or "\n" in error or len(error) > 2000:
                raise AssertionError(f"not a one-line refusal: {r.text[:300]!r}")
        health = kiosk.health()
        if not health["ok"] or not kiosk.feed.thread.is_alive():
            raise AssertionError(f"the kiosk is not healthy after {req['method']} {req['path'][:80]}: {health}")
        count[0] += 1
        if count[0] % 200 == 0:
            kiosk.history.verify_audit()
        return f"{r.status_code}"

    try:
        yield requests(), check
    finally:
        for c, _ in sessions.values():
            c.close()
        served.close()
        device.close()
