"""The kiosk's web page and JSON API (Starlette + Jinja2 templates, live updates by server-sent events).

Routes live in one router per concern (:mod:`.login`, :mod:`.incidents`, :mod:`.cases`, :mod:`.counts`,
:mod:`.history`, :mod:`.users`, :mod:`.events`, :mod:`.states` for evidence and enrolment); :mod:`.guard`
holds what every request passes through, in order: security headers, the body limit (bytes counted,
chunked too), the login-form cookie, the session (server-side, Starlette's ``AuthenticationMiddleware``)
and the login check.
Refusals are raised and turned into one line of JSON (``{"error": ...}``) on the API and a short
page elsewhere by the app's ``exception_handlers`` (:mod:`.app`); the kiosk keeps serving.
"""
from kiosk.web.app import create_app

__all__ = ["create_app"]
