"""Web users' passwords: the policy for a new one, hashing, changing it, one-time passwords.

Shared by the web UI (a user choosing a new password) and ``callbox user
passwd`` (root resetting a locked-out user's). A changed password ends every
session of the user. The admin's one-time password is also kept in the data
folder's ``admin-one-time-password`` for the console banner; that file
exists exactly while the admin's password is a one-time one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import secrets
from enum import StrEnum
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from appliance.config.records import Role, User
from appliance.store import Store, Txn, name_key
from appliance.webadmin.sessions import end_sessions_of

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 256
"""Longer input is refused before hashing, so a huge form field cannot cost the CPU."""
FIRST_ADMIN = "admin"
ONE_TIME_PASSWORD_FILE = "admin-one-time-password"
ONE_TIME_ALPHABET = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
"""Letters and digits without look-alikes (l/1, O/0), since a person types it off a console."""
ONE_TIME_LENGTH = 12

HASHER = PasswordHasher()


class PasswordProblem(StrEnum):
    """Why a new password is refused (each has a message in the UI's languages)."""

    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    SAME_AS_OLD = "same_as_old"
    MISMATCH = "mismatch"
    NOT_PRINTABLE = "not_printable"


PROBLEM_TEXT = {
    PasswordProblem.TOO_SHORT: f"must be at least {MIN_PASSWORD_LENGTH} characters",
    PasswordProblem.TOO_LONG: f"must be at most {MAX_PASSWORD_LENGTH} characters",
    PasswordProblem.SAME_AS_OLD: "must differ from the current password",
    PasswordProblem.MISMATCH: "the two entries differ",
    PasswordProblem.NOT_PRINTABLE: "must be printable text (no control characters)",
}


class PasswordRejected(ValueError):
    """A new password that the policy refuses; ``problem`` says why."""

    def __init__(self, problem: PasswordProblem) -> None:
        super().__init__(f"the new password {PROBLEM_TEXT[problem]}")
        self.problem = problem


class UnknownUser(LookupError):
    """No web user has that name."""

    def __init__(self, username: str) -> None:
        super().__init__(f"no web user named {username!r}")
        self.username = username


def password_matches(password_hash: str, password: str) -> bool:
    """True if ``password`` is the one ``password_hash`` was made from (never raises)."""
    if not password_hash or len(password) > MAX_PASSWORD_LENGTH:
        return False
    try:
        return HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@functools.cache
def _decoy_hash() -> str:
    return HASHER.hash(secrets.token_urlsafe(16))


def check_credentials(user: User | None, password: str) -> bool:
    """True if ``user`` exists and ``password`` is theirs.

    An unknown user costs the same hash as a known one, so the answer's time
    does not tell a guesser which usernames exist.
    """
    if user is None:
        password_matches(_decoy_hash(), password)
        return False
    return password_matches(user.password_hash, password)


def check_new_password(new: str, confirmation: str, current_hash: str) -> None:
    """Raise ``PasswordRejected`` unless ``new`` may replace the password of ``current_hash``."""
    if len(new) < MIN_PASSWORD_LENGTH:
        raise PasswordRejected(PasswordProblem.TOO_SHORT)
    if len(new) > MAX_PASSWORD_LENGTH:
        raise PasswordRejected(PasswordProblem.TOO_LONG)
    if not new.isprintable():
        raise PasswordRejected(PasswordProblem.NOT_PRINTABLE)
    if new != confirmation:
        raise PasswordRejected(PasswordProblem.MISMATCH)
    if password_matches(current_hash, new):
        raise PasswordRejected(PasswordProblem.SAME_AS_OLD)


def generate_one_time_password() -> str:
    """A fresh random one-time password (about 70 bits), easy to type off a screen."""
    return "".join(secrets.choice(ONE_TIME_ALPHABET) for _ in range(ONE_TIME_LENGTH))


def _store_password(txn: Txn, username: str, password_hash: str, one_time: bool) -> User:
    user = txn.get(User, name_key(username))
    if user is None:
        raise UnknownUser(username)
    changed = dataclasses.replace(user, password_hash=password_hash, must_change_password=one_time)
    txn.put(changed)
    end_sessions_of(txn, username)
    return changed


def _note_one_time_password(data_path: Path, username: str, password: str | None) -> None:
    """Keep the banner's file in step with the admin's password (absent unless one-time)."""
    if username != FIRST_ADMIN:
        return
    path = data_path / ONE_TIME_PASSWORD_FILE
    if password is None:
        path.unlink(missing_ok=True)
        return
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(password + "\n")
    if os.geteuid() == 0:
        # root's `callbox user passwd` must leave it readable by the services' user.
        owner = data_path.stat()
        with contextlib.suppress(OSError):
            os.chown(partial, owner.st_uid, owner.st_gid)
    partial.replace(path)


def pending_first_admin_password(store: Store, data_path: Path) -> str | None:
    """The admin's one-time password while it is still to be replaced, for ``callbox run``.

    On a store with no web user at all it first makes ``admin`` with a fresh
    one-time password, so the web UI can be signed into before any
    configuration is imported (the image's first boot does the same through
    its starting configuration). A password file left from an admin that has
    since been replaced (by ``config import``) is removed. None: nothing pending.
    """
    count, admin = store.read_sync(
        lambda txn: (txn.count(User), txn.get(User, name_key(FIRST_ADMIN)))
    )
    if count == 0:
        return _make_first_admin(store, data_path)
    if admin is not None and admin.must_change_password:
        try:
            return (data_path / ONE_TIME_PASSWORD_FILE).read_text(encoding="utf-8").strip() or None
        except OSError:
            return None
    _note_one_time_password(data_path, FIRST_ADMIN, None)
    return None


def _make_first_admin(store: Store, data_path: Path) -> str | None:
    password = generate_one_time_password()
    first = User(
        username=FIRST_ADMIN,
        role=Role.ADMIN,
        password_hash=HASHER.hash(password),
        must_change_password=True,
    )

    def create(txn: Txn) -> bool:
        if txn.count(User):
            return False  # another process made users meanwhile
        txn.put(first)
        return True

    if not store.write_sync(create):
        return None
    _note_one_time_password(data_path, FIRST_ADMIN, password)
    return password


def set_password(
    store: Store, data_path: Path, username: str, password: str, *, one_time: bool
) -> User:
    """Give ``username`` the new ``password`` (a one-time one if ``one_time``); end their sessions.

    For the CLI: blocks while it hashes and writes.
    """
    password_hash = HASHER.hash(password)
    user = store.write_sync(lambda txn: _store_password(txn, username, password_hash, one_time))
    _note_one_time_password(data_path, username, password if one_time else None)
    return user


async def change_password(store: Store, data_path: Path, username: str, password_hash: str) -> User:
    """The web's change: ``username`` chose the password of ``password_hash``; the one-time
    flag and file go, and every session of the user ends."""
    user = await store.write(lambda txn: _store_password(txn, username, password_hash, False))
    _note_one_time_password(data_path, username, None)
    return user
