"""Import and export of the whole configuration against the store."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from argon2 import PasswordHasher

from appliance.calllog.records import CALL_LOG_RECORDS
from appliance.config.records import CONFIG_RECORDS, Configuration, OutboundRoute, User
from appliance.settings import Settings
from appliance.store import Record, Store, Txn


def _with_password_hashed(user: User, hasher: PasswordHasher) -> User:
    if user.password is None:
        return user
    return dataclasses.replace(user, password=None, password_hash=hasher.hash(user.password))


def import_configuration(store: Store, configuration: Configuration) -> dict[str, int]:
    """Replace the stored configuration with ``configuration`` in one transaction.

    The document is fully validated before this is called, so the store
    either takes all of it or (on any error) keeps what it had. Returns the
    number of records of each kind written.
    """
    hasher = PasswordHasher()
    users = [_with_password_hashed(u, hasher) for u in configuration.users]
    configuration = dataclasses.replace(configuration, users=users)

    def replace(txn: Txn) -> dict[str, int]:
        written = {}
        for cls in CONFIG_RECORDS:
            txn.clear(cls)
            records = getattr(configuration, cls.KIND)
            for position, record in enumerate(records):
                # Routes are tried in the document's order: their keys keep it.
                txn.put(
                    record,
                    record.position_key(position) if isinstance(record, OutboundRoute) else None,
                )
            written[cls.KIND] = len(records)
        return written

    return store.write_sync(replace)


def open_store(settings: Settings, extra_kinds: Sequence[type[Record]] = ()) -> Store:
    """The store of configuration and call log (and ``extra_kinds``), at the settings' path."""
    return Store.open(
        settings.db_path,
        (*CONFIG_RECORDS, *CALL_LOG_RECORDS, *extra_kinds),
        map_size=settings.store.map_size_mb << 20,
    )


def export_configuration(store: Store) -> Configuration:
    """The stored configuration, from one consistent snapshot."""

    def collect(txn: Txn) -> Configuration:
        sections = {cls.KIND: list(txn.scan(cls)) for cls in CONFIG_RECORDS}
        return Configuration(**sections)  # type: ignore[arg-type]

    return store.read_sync(collect)
