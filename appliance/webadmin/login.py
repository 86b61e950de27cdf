"""The web UI's sign-in over HTTP: the pages, the session cookie, CSRF and the gate on every page.

``gate`` (a middleware) lets through only the sign-in page, static assets
and the health check without a session: a page request without one is sent
to ``/login?next=...``, an API request gets 401 JSON. A user whose password
is a one-time one reaches nothing but ``/password`` (and sign-out) until
they replace it. Every state-changing request carries the session's CSRF
token (form field ``csrf_token`` or header ``X-CSRF-Token``); the sign-in
form itself is tied to a short-lived cookie of its own, so another site
cannot sign a browser in either.
"""

from __future__ import annotations

import hmac
import math
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp_jinja2
from aiohttp import web

from appliance.config.records import User
from appliance.webadmin.accounts import PasswordRejected
from appliance.webadmin.auth import LockedOut, SignedIn, SignInFailed, WebAuth, WrongCurrentPassword
from appliance.webadmin.i18n import LANGUAGE_NAMES, LANGUAGES, negotiate, translate
from appliance.webadmin.sessions import WebSession

AUTH_KEY = web.AppKey("auth", WebAuth)
DEFAULT_LANGUAGE_KEY = web.AppKey("default_language", str)
LANGUAGE = web.RequestKey("language", str)
SESSION = web.RequestKey("session", WebSession)
"""Set only on a request with a live session, like ``USER``."""
USER = web.RequestKey("user", User)

SESSION_COOKIE = "callbox_session"
LOGIN_COOKIE = "callbox_login"
LANGUAGE_COOKIE = "callbox_lang"
LOGIN_FORM_TTL_S = 3600
FORM_TOKEN_BYTES = 24
FORM_TOKEN_LENGTH = 32  # base64 of FORM_TOKEN_BYTES
LANGUAGE_COOKIE_TTL_S = 365 * 86400

PUBLIC_PATHS = frozenset({"/login", "/api/v1/health"})
STATIC_PREFIX = "/static/"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Reachable while the password is a one-time one.
ONE_TIME_PATHS = frozenset({"/password", "/logout"})

SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def safe_next(target: str | None) -> str:
    """``target`` if it is a path on this site (where to go after sign-in), else ``/``.

    Refuses anything a browser could take to another origin: absolute URLs,
    scheme-relative ``//host``, backslashes (which browsers read as slashes),
    control characters, and the sign-in pages themselves.
    """
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or parts.path in ("/login", "/logout"):
        return "/"
    return target


def _redirect(location: str) -> web.Response:
    # Returned, not raised, so the gate still adds its headers and cookies.
    return web.Response(status=303, headers={"Location": location})


def _is_api(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return request.path.startswith("/api/") or (
        "application/json" in accept and "text/html" not in accept
    )


def _language(request: web.Request) -> str:
    chosen = request.query.get("lang") or request.cookies.get(LANGUAGE_COOKIE)
    if chosen in LANGUAGES:
        return chosen
    return negotiate(request.headers.get("Accept-Language"), request.app[DEFAULT_LANGUAGE_KEY])


def t(request: web.Request, key: str, **values: Any) -> str:
    """The text ``key`` in the request's language."""
    return translate(request[LANGUAGE], key, **values)


def _set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str,
                **options: Any) -> None:  # fmt: skip
    response.set_cookie(
        name, value, httponly=True, samesite="Strict", secure=request.secure, **options
    )


def _set_session_cookie(request: web.Request, response: web.StreamResponse, token: str) -> None:
    # No Max-Age: the browser forgets it when it closes; the server's expiry governs anyway.
    _set_cookie(request, response, SESSION_COOKIE, token, path="/")


def _csrf_ok(session: WebSession, sent: str | None) -> bool:
    return sent is not None and hmac.compare_digest(sent.encode(), session.csrf_token.encode())


async def _sent_csrf_token(request: web.Request) -> str | None:
    header = request.headers.get("X-CSRF-Token")
    if header is not None:
        return header
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        value = (await request.post()).get("csrf_token")
        return value if isinstance(value, str) else None
    return None


def _refusal(request: web.Request, status: int, error: str, key: str) -> web.Response:
    """401/403 for one request: JSON for the API, a short page in the UI's language otherwise."""
    if _is_api(request):
        return web.json_response({"error": error}, status=status)
    return render(request, "message.html", {"message": t(request, key)}, status)


async def _gated(request: web.Request, handler: Handler) -> web.StreamResponse:
    path = request.path
    if path in PUBLIC_PATHS or path.startswith(STATIC_PREFIX):
        return await handler(request)
    token = request.cookies.get(SESSION_COOKIE)
    found = await request.app[AUTH_KEY].sessions.find(token) if token else None
    if found is None:
        if _is_api(request):
            return web.json_response(
                {"error": "sign in first (POST /login)", "login": "/login"}, status=401
            )
        return _redirect("/login?" + urlencode({"next": safe_next(request.path_qs)}))
    session, user = found
    request[SESSION], request[USER] = session, user
    if request.method not in SAFE_METHODS and not _csrf_ok(
        session, await _sent_csrf_token(request)
    ):
        return _refusal(request, 403, "missing or wrong CSRF token", "form_expired")
    if user.must_change_password and path not in ONE_TIME_PATHS:
        if _is_api(request):
            return web.json_response(
                {"error": "replace the one-time password first", "password": "/password"},
                status=403,
            )
        return _redirect("/password")
    return await handler(request)


@web.middleware
async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Sessions, CSRF, the one-time password's detour, language and security headers."""
    request[LANGUAGE] = _language(request)
    response = await _gated(request, handler)
    if request.query.get("lang") in LANGUAGES:
        _set_cookie(
            request, response, LANGUAGE_COOKIE, request[LANGUAGE], path="/",
            max_age=LANGUAGE_COOKIE_TTL_S,
        )  # fmt: skip
    response.headers.update(SECURITY_HEADERS)
    if not request.path.startswith(STATIC_PREFIX):
        response.headers["Cache-Control"] = "no-store"
    return response


def render(
    request: web.Request, template: str, context: dict[str, Any], status: int = 200
) -> web.Response:
    """``template`` with ``context`` and what every page sees: texts, language links, user, CSRF.

    (Not aiohttp_jinja2's context processors: they keep state in the request
    under a plain string key, which aiohttp now warns about.)
    """
    session = request.get(SESSION)
    common = {
        "lang": request[LANGUAGE],
        "t": lambda key, **values: t(request, key, **values),
        "languages": [
            (code, LANGUAGE_NAMES[code], str(request.rel_url.update_query(lang=code)))
            for code in LANGUAGES
        ],
        "user": request.get(USER),
        "csrf_token": session.csrf_token if session else "",
    }
    return aiohttp_jinja2.render_template(template, request, common | context, status=status)


def _login_page(request: web.Request, status: int = 200, error: str | None = None,
                notice: str | None = None) -> web.Response:  # fmt: skip
    """The sign-in form, tied to this browser's form token (its cookie, made if missing).

    The token is kept while its cookie lives: a browser fetching the form
    twice (a second tab, its favicon's detour through here) must not turn the
    first copy into an expired form.
    """
    form_token = request.cookies.get(LOGIN_COOKIE, "")
    if len(form_token) != FORM_TOKEN_LENGTH:
        form_token = secrets.token_urlsafe(FORM_TOKEN_BYTES)
    context = {
        "next": safe_next(request.query.get("next")),
        "form_token": form_token,
        "error": error,
        "notice": notice,
    }
    response = render(request, "login.html", context, status)
    _set_cookie(request, response, LOGIN_COOKIE, form_token, path="/login",
                max_age=LOGIN_FORM_TTL_S)  # fmt: skip
    return response


async def login_page(request: web.Request) -> web.Response:
    """GET /login: the sign-in form (or onwards, for a browser already signed in)."""
    token = request.cookies.get(SESSION_COOKIE)
    if token and await request.app[AUTH_KEY].sessions.find(token):
        return _redirect(safe_next(request.query.get("next")))
    notice = t(request, "signed_out") if "signed_out" in request.query else None
    return _login_page(request, notice=notice)


def _signed_in(request: web.Request, signed_in: SignedIn, target: str) -> web.Response:
    response = _redirect("/password" if signed_in.user.must_change_password else target)
    _set_session_cookie(request, response, signed_in.token)
    response.del_cookie(LOGIN_COOKIE, path="/login")
    return response


async def login(request: web.Request) -> web.Response:
    """POST /login: check the form's username and password; on success, open a session."""
    form = await request.post()
    sent = form.get("form_token")
    expected = request.cookies.get(LOGIN_COOKIE)
    if not (isinstance(sent, str) and expected and hmac.compare_digest(sent, expected)):
        return _login_page(request, 403, t(request, "form_expired"))
    username, password = str(form.get("username", "")), str(form.get("password", ""))
    source = request.remote or "unknown"
    auth = request.app[AUTH_KEY]
    try:
        signed_in = await auth.sign_in(username.strip(), password, source)
    except LockedOut as exc:
        minutes = math.ceil(exc.seconds_left / 60)
        return _login_page(request, 429, t(request, "locked_out", minutes=minutes))
    except SignInFailed:
        return _login_page(request, 401, t(request, "login_failed"))
    previous = request.cookies.get(SESSION_COOKIE)
    if previous:
        await auth.sessions.close(previous)
    return _signed_in(request, signed_in, safe_next(str(form.get("next", "/"))))


async def logout(request: web.Request) -> web.Response:
    """POST /logout: end this browser's session."""
    await request.app[AUTH_KEY].sessions.close(request.cookies[SESSION_COOKIE])
    response = _redirect("/login?signed_out=1")
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


def _password_page(request: web.Request, status: int = 200, error: str | None = None
                   ) -> web.Response:  # fmt: skip
    user = request[USER]
    context = {"one_time": user.must_change_password, "error": error}
    return render(request, "password.html", context, status)


async def password_page(request: web.Request) -> web.Response:
    """GET /password: the form to choose a new password (forced after a one-time one)."""
    return _password_page(request)


async def change_password(request: web.Request) -> web.Response:
    """POST /password: replace the password; other sessions end, this browser stays signed in."""
    form = await request.post()
    user = request[USER]
    try:
        signed_in = await request.app[AUTH_KEY].change_password(
            user,
            str(form.get("current", "")),
            str(form.get("new", "")),
            str(form.get("confirm", "")),
        )
    except WrongCurrentPassword:
        return _password_page(request, 400, t(request, "wrong_current"))
    except PasswordRejected as exc:
        return _password_page(request, 400, t(request, exc.problem))
    return _signed_in(request, signed_in, "/")


def add_routes(app: web.Application) -> None:
    """The sign-in routes on ``app``."""
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/password", password_page)
    app.router.add_post("/password", change_password)
