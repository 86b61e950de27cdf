"""Signing in and changing passwords: the web UI's authentication logic, without HTTP.

``WebAuth`` checks a username and password against the stored argon2 hash,
counts failures per client address in a ``FailureGuard`` (slowed, then
locked out, per ``[login]``), opens sessions, and carries out a user's
password change. The HTTP layer (``login``) only turns forms into calls.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from appliance.config.records import User
from appliance.guard import FailureGuard
from appliance.schema import NAME, ConfigError
from appliance.settings import Settings
from appliance.store import Store, name_key
from appliance.webadmin.accounts import (
    HASHER,
    change_password,
    check_credentials,
    check_new_password,
    password_matches,
)
from appliance.webadmin.sessions import Sessions, WebSession

log = logging.getLogger(__name__)
T = TypeVar("T")

HASH_CONCURRENCY = 2
"""argon2 checks run at once at most: each takes 64 MiB and a core for a few hundred ms,
so a flood of sign-ins from many addresses queues instead of exhausting the box."""


class LockedOut(Exception):
    """The client's address failed to sign in too often; ``seconds_left`` of its lockout remain."""

    def __init__(self, seconds_left: float) -> None:
        super().__init__(f"locked out for {seconds_left:.0f} s more")
        self.seconds_left = seconds_left


class SignInFailed(Exception):
    """Wrong username or password (which of the two is never told)."""


class WrongCurrentPassword(Exception):
    """A voluntary password change gave a current password that is not the user's."""


@dataclass(frozen=True)
class SignedIn:
    """A successful sign-in: the cookie's token, the session and its user."""

    token: str
    session: WebSession
    user: User


class WebAuth:
    """Sign-in, sign-out and password changes of web users against the store."""

    def __init__(self, store: Store, settings: Settings, guard: FailureGuard | None = None) -> None:
        self.store = store
        self.data_path: Path = settings.data_path
        self.sessions = Sessions(store, settings.login)
        self.guard = guard or FailureGuard(settings.login, "logins", log)
        self._hash_slots = asyncio.Semaphore(HASH_CONCURRENCY)

    async def _hashing(self, check: Callable[..., T], *args: Any) -> T:
        """``check(*args)`` (an argon2 computation) on the executor, in one of the few slots."""
        async with self._hash_slots:
            return await asyncio.get_running_loop().run_in_executor(None, check, *args)

    async def sign_in(self, username: str, password: str, source: str) -> SignedIn:
        """Open a session for ``username`` if ``password`` is theirs and ``source`` is not locked.

        Raises ``LockedOut`` (nothing is checked while locked) or ``SignInFailed``,
        after waiting the guard's slow-down once ``source`` has failed often.
        """
        left = self.guard.ban_left(source)
        if left > 0:
            raise LockedOut(left)
        user = await self._user(username)
        matches = await self._hashing(check_credentials, user, password)
        if user is None or not matches:
            self.guard.failed(source, f"as {username[:64]!r}")
            await asyncio.sleep(self.guard.refusal_delay(source))
            left = self.guard.ban_left(source)
            if left > 0:
                raise LockedOut(left)
            raise SignInFailed("wrong username or password")
        token, session = await self.sessions.open(user)
        log.info("web sign-in of %s from %s", user.username, source)
        return SignedIn(token, session, user)

    async def _user(self, username: str) -> User | None:
        """The user named ``username``; None also for a name no user can have (too long for a
        key, NUL), which is refused like an unknown one."""
        try:
            NAME.check(username, "username")
        except ConfigError:
            return None
        return await self.store.read(lambda txn: txn.get(User, name_key(username)))

    async def change_password(
        self, user: User, current: str | None, new: str, confirmation: str
    ) -> SignedIn:
        """``user`` replaces their password; every session of theirs ends, a new one opens.

        ``current`` is required unless the password is a one-time one (the user
        has just signed in with it). Raises ``WrongCurrentPassword`` or
        ``PasswordRejected``.
        """
        if not user.must_change_password and not await self._hashing(
            password_matches, user.password_hash, current or ""
        ):
            raise WrongCurrentPassword("the current password is wrong")
        await self._hashing(check_new_password, new, confirmation, user.password_hash)
        new_hash = await self._hashing(HASHER.hash, new)
        changed = await change_password(self.store, self.data_path, user.username, new_hash)
        token, session = await self.sessions.open(changed)
        log.info("web user %s changed their password", user.username)
        return SignedIn(token, session, changed)
