"""Signing in to the web UI: sessions, cookies, CSRF, the gate on every page, lockout, languages.

Each test talks HTTP to the web app on a loopback socket; users and sessions
live in a real LMDB store in the test's data folder.
"""

from __future__ import annotations

import logging
import ssl
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import ClientResponse, web
from hypothesis import given
from hypothesis import strategies as st

from appliance.webadmin.i18n import negotiate
from appliance.webadmin.login import LANGUAGE_COOKIE, SESSION_COOKIE, safe_next
from appliance.webadmin.sessions import WebSession
from tests.webadmin.conftest import SUPERVISOR, SUPERVISOR_PASSWORD, Browser, RunningWeb, hidden

WRONG = "Wrong username or password."


def _cookie_attributes(response: ClientResponse, name: str) -> list[str]:
    """The attributes of the Set-Cookie of ``name``, lower case."""
    headers = response.headers.getall("Set-Cookie", [])
    found = [h for h in headers if h.startswith(f"{name}=")]
    assert found, f"no Set-Cookie for {name} in {headers}"
    return [a.strip().lower() for a in found[0].split(";")]


async def test_right_password_opens_a_session_cookie_that_is_httponly_and_strict(
    running_web: RunningWeb,
) -> None:
    browser = running_web.browser()
    response, _ = await browser.sign_in(SUPERVISOR, SUPERVISOR_PASSWORD)
    assert response.status == 303
    assert response.headers["Location"] == "/"
    attributes = _cookie_attributes(response, SESSION_COOKIE)
    assert "httponly" in attributes
    assert "samesite=strict" in attributes
    assert "path=/" in attributes
    assert "secure" not in attributes, "plain HTTP: a Secure cookie would never come back"
    assert not any(a.startswith(("max-age", "expires")) for a in attributes)

    status, page = await browser.get("/")
    assert status.status == 200
    assert "<h1>Callbox 0.1.0</h1>" in page
    assert f"Signed in as {SUPERVISOR}" in page
    assert status.headers["Cache-Control"] == "no-store"
    assert status.headers["X-Frame-Options"] == "DENY"


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    key, certificate = tmp_path / "web.key", tmp_path / "web.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(certificate)],
        check=True, capture_output=True,
    )  # fmt: skip
    return certificate, key


async def test_over_tls_the_session_cookie_is_also_secure(
    running_web: RunningWeb, certificate: tuple[Path, Path]
) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    site = web.TCPSite(running_web.runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = running_web.runner.addresses[-1][1]
    browser = Browser(f"https://127.0.0.1:{port}")
    try:
        _, page = await browser.get("/login", ssl=ssl.create_default_context(cafile=certificate[0]))
        form = {"form_token": hidden(page, "form_token"), "username": SUPERVISOR,
                "password": SUPERVISOR_PASSWORD}  # fmt: skip
        response, _ = await browser.post(
            "/login", data=form, ssl=ssl.create_default_context(cafile=certificate[0])
        )
    finally:
        await browser.close()
    assert response.status == 303
    attributes = _cookie_attributes(response, SESSION_COOKIE)
    assert "secure" in attributes
    assert "httponly" in attributes


async def test_the_store_keeps_only_a_hash_of_the_session_token(running_web: RunningWeb) -> None:
    browser = running_web.browser()
    await browser.sign_in(SUPERVISOR, SUPERVISOR_PASSWORD)
    token = browser.cookie(SESSION_COOKIE)
    assert token
    sessions = running_web.auth.store.read_sync(lambda txn: list(txn.scan(WebSession)))
    assert [s.username for s in sessions] == [SUPERVISOR]
    assert token not in repr(sessions)


async def test_wrong_password_and_unknown_user_get_the_same_refusal(
    running_web: RunningWeb,
) -> None:
    wrong_password, wrong_page = await running_web.browser().sign_in(SUPERVISOR, "not-it-at-all")
    unknown_user, unknown_page = await running_web.browser().sign_in("nobody", "not-it-at-all")
    assert wrong_password.status == unknown_user.status == 401
    for page in (wrong_page, unknown_page):
        assert WRONG in page
        assert "nobody" not in page
        assert "exist" not in page
    assert SESSION_COOKIE not in str(wrong_password.headers.getall("Set-Cookie", []))


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("\x00admin", "whatever-it-is"),
        ("a" * 600, "whatever-it-is"),
        ("管理员", "whatever-it-is"),
        ("", ""),
        ("admin", "x" * 100_000),
        ("../../etc/passwd", "%00"),
    ],
)
async def test_odd_credentials_are_refused_like_wrong_ones(
    running_web: RunningWeb, username: str, password: str
) -> None:
    response, page = await running_web.browser().sign_in(username, password)
    assert response.status == 401
    assert WRONG in page


async def test_a_page_without_a_session_redirects_to_sign_in_and_back(
    running_web: RunningWeb,
) -> None:
    browser = running_web.browser()
    response, _ = await browser.get("/?view=queues")
    assert response.status == 303
    location = urlsplit(response.headers["Location"])
    assert location.path == "/login"
    assert parse_qs(location.query)["next"] == ["/?view=queues"]

    _, login_page = await browser.get(response.headers["Location"])
    assert hidden(login_page, "next") == "/?view=queues"
    signed_in, _ = await browser.sign_in(SUPERVISOR, SUPERVISOR_PASSWORD, "/%3Fview%3Dqueues")
    assert signed_in.headers["Location"] == "/?view=queues"


@pytest.mark.parametrize(
    "target",
    ["//evil.example/", "https://evil.example/", "/\\evil.example", "evil", "/login", "/\r\nX: y"],
)
async def test_sign_in_never_sends_the_browser_off_site(
    running_web: RunningWeb, target: str
) -> None:
    browser = running_web.browser()
    _, page = await browser.get("/login", params={"next": target})
    form = {
        "form_token": hidden(page, "form_token"),
        "next": target,
        "username": SUPERVISOR,
        "password": SUPERVISOR_PASSWORD,
    }
    response, _ = await browser.post("/login", data=form)
    assert response.headers["Location"] == "/"


@given(st.text(max_size=60))
def test_a_safe_next_is_always_a_local_path(target: str) -> None:
    result = safe_next(target)
    assert result.startswith("/")
    assert not result.startswith("//")
    assert "\\" not in result
    assert not urlsplit(result).netloc


async def test_api_requests_without_a_session_get_401_json(running_web: RunningWeb) -> None:
    browser = running_web.browser()
    response, body = await browser.get("/api/v1/calls")
    assert response.status == 401
    assert response.content_type == "application/json"
    assert "sign in" in body
    json_accept, _ = await browser.get("/", headers={"Accept": "application/json"})
    assert json_accept.status == 401


async def test_health_sign_in_page_and_static_assets_need_no_session(
    running_web: RunningWeb,
) -> None:
    browser = running_web.browser()
    health, body = await browser.get("/api/v1/health")
    assert health.status == 503  # no switch runs in this test
    assert '"web": "ok"' in body
    assert (await browser.get("/login"))[0].status == 200
    css, _ = await browser.get("/static/callbox.css")
    assert css.status == 200
    assert css.content_type == "text/css"


async def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(
    running_web: RunningWeb,
) -> None:
    browser = running_web.browser()
    await browser.sign_in(SUPERVISOR, SUPERVISOR_PASSWORD)
    refused, page = await browser.post("/logout", data={})
    assert refused.status == 403
    assert "The form expired or came from another site" in page
    forged, _ = await browser.post("/logout", data={"csrf_token": "guessed"})
    assert forged.status == 403
    api, body = await browser.post("/logout", headers={"Accept": "application/json"})
    assert api.status == 403
    assert "CSRF" in body
    still, _ = await browser.get("/")
    assert still.status == 200

    _, page = await browser.get("/")
    by_header, _ = await browser.post(
        "/logout", headers={"X-CSRF-Token": hidden(page, "csrf_token")}
    )
    assert by_header.status == 303


async def test_a_sign_in_form_posted_from_elsewhere_is_refused(running_web: RunningWeb) -> None:
    browser = running_web.browser()
    form = {"form_token": "made-up", "username": SUPERVISOR, "password": SUPERVISOR_PASSWORD}
    response, page = await browser.post("/login", data=form)
    assert response.status == 403
    assert "The form expired or came from another site" in page
    assert browser.cookie(SESSION_COOKIE) is None


async def test_sign_out_ends_the_session_on_the_server(running_web: RunningWeb) -> None:
    browser = running_web.browser()
    await browser.sign_in(SUPERVISOR, SUPERVISOR_PASSWORD)
    token = browser.cookie(SESSION_COOKIE)
    _, page = await browser.get("/")
    response, _ = await browser.post("/logout", data={"csrf_token": hidden(page, "csrf_token")})
    assert response.headers["Location"] == "/login?signed_out=1"
    _, login_page = await browser.get("/login?signed_out=1")
    assert "You have signed out." in login_page

    replay = running_web.browser()
    replay.session.cookie_jar.update_cookies({SESSION_COOKIE: str(token)})
    after, _ = await replay.get("/")
    assert after.status == 303
    assert running_web.auth.store.read_sync(lambda txn: txn.count(WebSession)) == 0


async def test_a_session_ends_after_idling_and_after_its_maximum_age(
    running_web: RunningWeb,
) -> None:
    limits = running_web.settings.login
    clock = [time.time()]
    running_web.auth.sessions.now = lambda: clock[0]
    browser = running_web.browser()
    await browser.sign_in(SUPERVISOR, SUPERVISOR_PASSWORD)

    # Used just often enough never to idle out, it still ends at its maximum age.
    step = limits.session_idle_s - 1
    while clock[0] + step < time.time() + limits.session_max_s:
        clock[0] += step
        assert (await browser.get("/"))[0].status == 200, "an active session ended early"
    clock[0] = time.time() + limits.session_max_s
    assert (await browser.get("/"))[0].status == 303

    await browser.sign_in(SUPERVISOR, SUPERVISOR_PASSWORD)
    clock[0] += limits.session_idle_s - 1
    assert (await browser.get("/"))[0].status == 200
    clock[0] += limits.session_idle_s
    assert (await browser.get("/"))[0].status == 303


async def test_repeated_failures_slow_then_lock_out_the_address(
    running_web: RunningWeb, caplog: pytest.LogCaptureFixture
) -> None:
    limits = running_web.settings.login
    browser = running_web.browser()
    with caplog.at_level(logging.WARNING, logger="appliance.webadmin.auth"):
        for attempt in range(1, limits.ban_after):
            started = time.monotonic()
            response, _ = await browser.sign_in(SUPERVISOR, f"guess-{attempt}")
            assert response.status == 401
            if attempt >= limits.slow_after:
                assert time.monotonic() - started >= limits.slow_s
        locked, page = await browser.sign_in("nobody", "last-guess")
    assert locked.status == 429
    assert "Too many failed sign-ins from this address" in page
    assert "Try again in 10 minutes." in page
    assert [r.getMessage() for r in caplog.records] == [
        f"banned 127.0.0.1 for 600 s after {limits.ban_after} failed logins (last: as 'nobody')"
    ]
    # While locked even the right password is refused, with the same message.
    right, page = await running_web.browser().sign_in(SUPERVISOR, SUPERVISOR_PASSWORD)
    assert right.status == 429
    assert "Too many failed sign-ins" in page


@pytest.mark.parametrize(
    ("accept_language", "title"),
    [
        ("zh-CN,zh;q=0.9,en;q=0.8", "登录 Callbox"),
        ("en-US,en;q=0.9", "Sign in to Callbox"),
        ("fr-FR, en;q=0.5, zh;q=0.7", "登录 Callbox"),
        ("fr-FR", "登录 Callbox"),  # the box's language ([ivr] prompt_language) by default
    ],
)
async def test_the_sign_in_page_speaks_the_browsers_language(
    running_web: RunningWeb, accept_language: str, title: str
) -> None:
    _, page = await running_web.browser(accept_language).get("/login")
    assert f"<h1>{title}</h1>" in page
    assert ('lang="zh-CN"' in page) == ("登录" in title)


async def test_the_language_switch_overrides_the_browser_and_sticks(
    running_web: RunningWeb,
) -> None:
    browser = running_web.browser("zh-CN")
    _, page = await browser.get("/login?next=/")
    assert 'href="/login?next=/&amp;lang=en"' in page
    _, page = await browser.get("/login?next=/&lang=en")
    assert "<h1>Sign in to Callbox</h1>" in page
    assert browser.cookie(LANGUAGE_COOKIE) == "en"
    _, page = await browser.get("/login")
    assert "<h1>Sign in to Callbox</h1>" in page
    _, page = await browser.sign_in(SUPERVISOR, "wrong-password")
    assert WRONG in page
    await browser.get("/login?lang=zh")
    _, page = await browser.sign_in(SUPERVISOR, "wrong-password")
    assert "用户名或密码错误。" in page


@given(st.text(max_size=200))
def test_any_accept_language_header_gives_one_of_the_ui_languages(header: str) -> None:
    assert negotiate(header, "zh") in ("zh", "en")


async def test_fetching_the_form_again_keeps_the_first_copy_valid(running_web: RunningWeb) -> None:
    """A browser's favicon request detours through /login: the open form must still work."""
    browser = running_web.browser()
    _, first = await browser.get("/login")
    await browser.get("/favicon.ico")
    await browser.get("/login")
    form = {
        "form_token": hidden(first, "form_token"),
        "username": SUPERVISOR,
        "password": SUPERVISOR_PASSWORD,
    }
    response, _ = await browser.post("/login", data=form)
    assert response.status == 303
