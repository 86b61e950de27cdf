"""The web sign-in's costs: checking a password (argon2id) and finding a request's session.

``make bench`` times them; ``make test`` runs each once with timing off. A
sign-in pays the password check once; every signed-in request pays the
session lookup (one LMDB read of the session and its user).
"""

from __future__ import annotations

import time
from pathlib import Path

from pytest_benchmark.fixture import BenchmarkFixture

from appliance.config.records import Role, User
from appliance.store import Store, Txn
from appliance.webadmin.accounts import HASHER, check_credentials
from appliance.webadmin.sessions import WebSession, credential_of, session_and_user, token_hash

PASSWORD = "call-center-2026"


def test_password_check(benchmark: BenchmarkFixture) -> None:
    user = User(username="admin", role=Role.ADMIN, password_hash=HASHER.hash(PASSWORD))
    assert benchmark(check_credentials, user, PASSWORD)


def test_session_lookup(benchmark: BenchmarkFixture, tmp_path: Path) -> None:
    store = Store.open(tmp_path / "db", [User, WebSession])
    user = User(username="admin", role=Role.ADMIN, password_hash=HASHER.hash(PASSWORD))
    session = WebSession(
        token_hash=token_hash("a-cookie-token"),
        username="admin",
        csrf_token="csrf",
        credential=credential_of(user),
        opened_s=time.time(),
        seen_s=time.time(),
    )

    def put(txn: Txn) -> None:
        txn.put(user)
        txn.put(session)

    store.write_sync(put)
    try:
        found = benchmark(store.read_sync, lambda txn: session_and_user(txn, session.key()))
    finally:
        store.close()
    assert found == (session, user)
