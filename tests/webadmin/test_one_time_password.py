"""The admin's one-time password: the forced change at the first web sign-in, and CLI recovery.

The web app runs on a loopback socket over a real LMDB store; ``callbox user
passwd`` runs as its own process on the same store, as root would run it
while the appliance is up.
"""

from __future__ import annotations

import fcntl
import os
import select
import subprocess
import sys
import termios
import time
from pathlib import Path

import lmdb
import msgpack
import pytest
from argon2 import PasswordHasher

from appliance.config import open_store
from appliance.config.records import User
from appliance.store import Store, name_key
from appliance.webadmin.accounts import ONE_TIME_PASSWORD_FILE
from appliance.webadmin.login import SESSION_COOKIE
from tests.webadmin.conftest import (
    ADMIN_ONE_TIME,
    SUPERVISOR,
    SUPERVISOR_PASSWORD,
    Browser,
    RunningWeb,
    hidden,
    prepare_data,
)

NEW_PASSWORD = "call-center-2026"


def _stored_user(running_web: RunningWeb, username: str) -> User:
    user = running_web.auth.store.read_sync(lambda txn: txn.get(User, name_key(username)))
    assert user is not None
    return user


async def _change(browser: Browser, new: str, confirm: str) -> tuple[int, str]:
    _, page = await browser.get("/password")
    form = {"csrf_token": hidden(page, "csrf_token"), "new": new, "confirm": confirm}
    response, body = await browser.post("/password", data=form)
    return response.status, body


async def test_the_one_time_password_leads_only_to_choosing_a_new_one(
    running_web: RunningWeb,
) -> None:
    browser = running_web.browser()
    response, _ = await browser.sign_in("admin", ADMIN_ONE_TIME, "/%3Fview%3Dqueues")
    assert response.status == 303
    assert response.headers["Location"] == "/password"

    _, page = await browser.get("/password")
    assert "<h1>Choose your new password</h1>" in page
    assert "one-time password shown on the console" in page
    assert 'name="current"' not in page

    for path in ("/", "/?view=queues", "/anything"):
        elsewhere, _ = await browser.get(path)
        assert elsewhere.status == 303
        assert elsewhere.headers["Location"] == "/password"
    api, body = await browser.get("/api/v1/calls", headers={"Accept": "application/json"})
    assert api.status == 403
    assert "one-time password" in body


@pytest.mark.parametrize(
    ("new", "confirm", "message"),
    [
        ("short-1", "short-1", "The new password is too short: it needs at least 10 characters."),
        (NEW_PASSWORD, NEW_PASSWORD + "x", "The two entries of the new password differ."),
        (
            ADMIN_ONE_TIME,
            ADMIN_ONE_TIME,
            "The new password must differ from the current (one-time) password.",
        ),
        ("tab\there-long", "tab\there-long", "may not contain control characters"),
    ],
)
async def test_a_new_password_against_the_policy_is_refused_by_name(
    running_web: RunningWeb, new: str, confirm: str, message: str
) -> None:
    browser = running_web.browser()
    await browser.sign_in("admin", ADMIN_ONE_TIME)
    status, page = await _change(browser, new, confirm)
    assert status == 400
    assert message in page
    assert _stored_user(running_web, "admin").must_change_password
    assert (running_web.settings.data_path / ONE_TIME_PASSWORD_FILE).exists()


async def test_policy_messages_are_in_chinese_for_a_chinese_browser(
    running_web: RunningWeb,
) -> None:
    browser = running_web.browser("zh-CN,zh;q=0.9")
    await browser.sign_in("admin", ADMIN_ONE_TIME)
    _, page = await browser.get("/password")
    assert "<h1>设置新密码</h1>" in page
    assert "控制台上显示的一次性密码" in page
    _, page = await _change(browser, "short", "short")
    assert "新密码太短：至少需要 10 个字符。" in page
    _, page = await _change(browser, NEW_PASSWORD, "different-entry")
    assert "两次输入的新密码不一致。" in page


async def test_changing_the_one_time_password_frees_the_ui_and_ends_the_other_sessions(
    running_web: RunningWeb,
) -> None:
    other = running_web.browser()
    await other.sign_in("admin", ADMIN_ONE_TIME)
    browser = running_web.browser()
    await browser.sign_in("admin", ADMIN_ONE_TIME)
    old_token = browser.cookie(SESSION_COOKIE)

    status, _ = await _change(browser, NEW_PASSWORD, NEW_PASSWORD)
    assert status == 303
    assert browser.cookie(SESSION_COOKIE) != old_token, "the session token is renewed"
    landed, page = await browser.get("/")
    assert landed.status == 200
    assert "<h1>Callbox 0.1.0</h1>" in page

    admin = _stored_user(running_web, "admin")
    assert not admin.must_change_password
    assert not (running_web.settings.data_path / ONE_TIME_PASSWORD_FILE).exists()
    assert (await other.get("/"))[0].status == 303, "the other browser's session ended"

    again = running_web.browser()
    assert (await again.sign_in("admin", ADMIN_ONE_TIME))[0].status == 401
    assert (await again.sign_in("admin", NEW_PASSWORD))[0].headers["Location"] == "/"


async def test_a_voluntary_change_needs_the_current_password(running_web: RunningWeb) -> None:
    browser = running_web.browser()
    await browser.sign_in(SUPERVISOR, SUPERVISOR_PASSWORD)
    _, page = await browser.get("/password")
    assert 'name="current"' in page
    assert "one-time" not in page
    form = {"csrf_token": hidden(page, "csrf_token"), "new": NEW_PASSWORD, "confirm": NEW_PASSWORD}
    wrong, body = await browser.post("/password", data=form | {"current": "not-mine-at-all"})
    assert wrong.status == 400
    assert "The current password is wrong." in body
    right, _ = await browser.post("/password", data=form | {"current": SUPERVISOR_PASSWORD})
    assert right.status == 303
    assert (await browser.get("/"))[0].status == 200


def _callbox(data: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CALLBOX_DATA_DIR=str(data))
    env.pop("CALLBOX_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "appliance", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_cli_passwd_sets_a_typed_password_and_ends_the_users_sessions(
    running_web: RunningWeb,
) -> None:
    browser = running_web.browser()
    await browser.sign_in(SUPERVISOR, SUPERVISOR_PASSWORD)
    data = running_web.settings.data_path
    typed = "from-the-console-1"

    differ = _callbox(data, "user", "passwd", SUPERVISOR, stdin=f"{typed}\nsomething-else\n")
    assert differ.returncode == 2
    assert "the two entries differ; nothing changed" in differ.stderr
    short = _callbox(data, "user", "passwd", SUPERVISOR, stdin="short\nshort\n")
    assert short.returncode == 2
    assert "must be at least 10 characters" in short.stderr
    unknown = _callbox(data, "user", "passwd", "nobody", stdin=f"{typed}\n{typed}\n")
    assert unknown.returncode == 1
    assert "no web user named 'nobody'" in unknown.stderr
    assert (await browser.get("/"))[0].status == 200, "a refused change ends nothing"

    done = _callbox(data, "user", "passwd", SUPERVISOR, stdin=f"{typed}\n{typed}\n")
    assert done.returncode == 0, done.stderr
    assert f"password of {SUPERVISOR} changed" in done.stdout
    assert (await browser.get("/"))[0].status == 303
    fresh = running_web.browser()
    assert (await fresh.sign_in(SUPERVISOR, typed))[0].headers["Location"] == "/"


async def test_cli_one_time_password_is_printed_written_for_the_banner_and_forced(
    running_web: RunningWeb,
) -> None:
    browser = running_web.browser()
    await browser.sign_in("admin", ADMIN_ONE_TIME)
    await _change(browser, NEW_PASSWORD, NEW_PASSWORD)
    data = running_web.settings.data_path
    assert not (data / ONE_TIME_PASSWORD_FILE).exists()

    done = _callbox(data, "user", "passwd", "admin", "--one-time")
    assert done.returncode == 0, done.stderr
    printed = done.stdout.split("one-time password for admin: ")[1].split()[0]
    assert len(printed) == 12
    assert (data / ONE_TIME_PASSWORD_FILE).read_text() == printed + "\n"
    assert (data / ONE_TIME_PASSWORD_FILE).stat().st_mode & 0o777 == 0o600
    assert (await browser.get("/"))[0].status == 303, "the admin's session ended"

    locked_out_admin = running_web.browser()
    response, _ = await locked_out_admin.sign_in("admin", printed)
    assert response.headers["Location"] == "/password"


def test_stored_users_of_schema_1_gain_the_one_time_flag_unset(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "db", [User])
    store.close()
    env = lmdb.open(str(tmp_path / "db"), max_dbs=16)
    users, meta = env.open_db(b"users"), env.open_db(b"meta")
    old = {"username": "admin", "role": "admin", "password_hash": "$argon2id$v=19$x"}
    with env.begin(write=True) as txn:
        txn.put(b"admin", msgpack.packb({"v": 1, "d": old}), db=users)
        txn.put(b"schema:users", msgpack.packb(1), db=meta)
    env.close()

    store = Store.open(tmp_path / "db", [User])
    try:
        admin = store.read_sync(lambda txn: txn.get(User, name_key("admin")))
    finally:
        store.close()
    assert admin is not None
    assert admin.password_hash == "$argon2id$v=19$x"
    assert admin.must_change_password is False


def _read_until(fd: int, marker: bytes, seconds: float = 30) -> bytes:
    """What the terminal ``fd`` shows up to and including ``marker``."""
    seen = b""
    deadline = time.monotonic() + seconds
    while marker not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {marker!r} on the terminal; it showed {seen!r}"
        if select.select([fd], [], [], remaining)[0]:
            seen += os.read(fd, 1024)
    return seen


def test_cli_passwd_reads_the_password_hidden_from_a_terminal(tmp_path: Path) -> None:
    settings = prepare_data(tmp_path / "var")
    controller, terminal = os.openpty()
    env = dict(os.environ, CALLBOX_DATA_DIR=str(settings.data_path))
    env.pop("CALLBOX_CONFIG", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "appliance", "user", "passwd", SUPERVISOR],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=env,
        start_new_session=True,
        # The new session's controlling terminal: getpass reads from /dev/tty.
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
    )
    os.close(terminal)
    try:
        shown = _read_until(controller, b"new password for wangfang: ")
        os.write(controller, NEW_PASSWORD.encode() + b"\n")
        shown += _read_until(controller, b"again: ")
        os.write(controller, NEW_PASSWORD.encode() + b"\n")
        shown += _read_until(controller, b"sessions have ended")
        assert process.wait(30) == 0
    finally:
        process.kill()
        os.close(controller)
    assert NEW_PASSWORD.encode() not in shown, "the password was echoed"
    store = open_store(settings)
    try:
        user = store.read_sync(lambda txn: txn.get(User, name_key(SUPERVISOR)))
    finally:
        store.close()
    assert user is not None
    assert PasswordHasher().verify(user.password_hash, NEW_PASSWORD)
