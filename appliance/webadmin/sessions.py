"""Web sessions, kept in the store so they survive a restart of the web process.

The browser holds a random token in a cookie; the store keeps only the
token's SHA-256 (a copy of the database gives no live session). A session
ends when it has not been used for ``session_idle_s``, ``session_max_s``
after sign-in, when its user signs out, or when the user's password changes
(the session remembers a fingerprint of the hash it was opened under, so a
change from anywhere, the web, ``callbox user passwd`` or an import, ends it).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import ClassVar

from appliance.config.records import User
from appliance.settings import LoginSettings
from appliance.store import Store, Txn, name_key

TOKEN_BYTES = 32
TOUCH_EVERY_S = 60.0
"""How stale a session's last use may get before a request writes it anew (not every request)."""


@dataclass(frozen=True)
class WebSession:
    """One signed-in browser: whose it is, its CSRF token and when it was opened and last used."""

    KIND: ClassVar[str] = "web_sessions"
    SCHEMA_VERSION: ClassVar[int] = 1

    token_hash: str
    """Hex SHA-256 of the cookie's token; the key."""
    username: str
    csrf_token: str
    credential: str
    """Fingerprint of the user's password hash at sign-in."""
    opened_s: float
    seen_s: float

    def key(self) -> bytes:
        """The record's key: the token's hash."""
        return bytes.fromhex(self.token_hash)


def token_hash(token: str) -> str:
    """The stored form of a cookie token."""
    return hashlib.sha256(token.encode()).hexdigest()


def credential_of(user: User) -> str:
    """A fingerprint of ``user``'s password hash: it changes whenever the password does."""
    return hashlib.sha256(user.password_hash.encode()).hexdigest()[:32]


def end_sessions_of(txn: Txn, username: str) -> int:
    """Delete every session of ``username`` inside ``txn``; how many there were."""
    doomed = [s.key() for s in txn.scan(WebSession) if s.username == username]
    for key in doomed:
        txn.delete(WebSession, key)
    return len(doomed)


class Sessions:
    """Opening, finding and ending web sessions in the store.

    ``now`` returns wall-clock seconds (sessions outlive the process); tests pass their own.
    """

    def __init__(
        self, store: Store, limits: LoginSettings, now: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.limits = limits
        self.now = now

    def _expired(self, session: WebSession, now: float) -> bool:
        return (
            now - session.seen_s >= self.limits.session_idle_s
            or now - session.opened_s >= self.limits.session_max_s
        )

    async def open(self, user: User) -> tuple[str, WebSession]:
        """A new session of ``user``: the cookie's token and the stored session.

        Sessions that have expired (anyone's) are swept out in the same write,
        so the table stays as small as the number of signed-in browsers.
        """
        token = secrets.token_urlsafe(TOKEN_BYTES)
        now = self.now()
        session = WebSession(
            token_hash=token_hash(token),
            username=user.username,
            csrf_token=secrets.token_urlsafe(TOKEN_BYTES),
            credential=credential_of(user),
            opened_s=now,
            seen_s=now,
        )

        def put(txn: Txn) -> None:
            for stale in [s.key() for s in txn.scan(WebSession) if self._expired(s, now)]:
                txn.delete(WebSession, stale)
            txn.put(session)

        await self.store.write(put)
        return token, session

    async def find(self, token: str) -> tuple[WebSession, User] | None:
        """The live session of cookie ``token`` and its user, or None (ending a dead one)."""
        key = bytes.fromhex(token_hash(token))
        found = await self.store.read(lambda txn: session_and_user(txn, key))
        if found is None:
            return None
        session, user = found
        now = self.now()
        if user is None or self._expired(session, now) or credential_of(user) != session.credential:
            await self.store.write(lambda txn: txn.delete(WebSession, key))
            return None
        if now - session.seen_s >= TOUCH_EVERY_S:
            session = replace(session, seen_s=now)
            await self.store.write(lambda txn: _touch(txn, session))
        return session, user

    async def close(self, token: str) -> None:
        """End the session of cookie ``token`` (signing out)."""
        key = bytes.fromhex(token_hash(token))
        await self.store.write(lambda txn: txn.delete(WebSession, key))


def session_and_user(txn: Txn, key: bytes) -> tuple[WebSession, User | None] | None:
    """The session stored at ``key`` and its user (None if gone); None if there is no session."""
    session = txn.get(WebSession, key)
    if session is None:
        return None
    return session, txn.get(User, name_key(session.username))


def _touch(txn: Txn, session: WebSession) -> None:
    # A sign-out between the read and this write must not bring the session back.
    if txn.get(WebSession, session.key()) is not None:
        txn.put(session)
