"""The store: one LMDB environment with a named sub-database per record kind.

LMDB ties a write transaction to the thread that began it, so every write in
a process runs on one writer thread (``write``/``write_sync`` hand it a
function to run inside a write transaction). Reads take a snapshot and may run
anywhere: ``read`` runs them on the default executor so a coroutine never
blocks the event loop on a page fault. Committed transactions are durable and
atomic: a process killed mid-write leaves the last commit intact.

Each record kind has a generation in the meta sub-database that every
committed write touching the kind increments, so a process can notice
another's changes (a ``config import`` while the switch runs) with one small
read instead of re-reading the records.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import lmdb
import msgpack

from appliance.store.keys import prefix_end
from appliance.store.migrations import MIGRATIONS, Migration
from appliance.store.records import (
    R,
    Record,
    StoreError,
    decode,
    decode_cached,
    decode_envelope,
    encode,
    encode_envelope,
)

T = TypeVar("T")

META = "meta"
STORE_FORMAT = 1


def _generation_key(kind: str) -> bytes:
    return f"generation:{kind}".encode()


class Txn:
    """A transaction on the store, typed by record class."""

    def __init__(self, store: Store, txn: lmdb.Transaction) -> None:
        self._store = store
        self._txn = txn
        self.changed: set[str] = set()
        """Record kinds this transaction wrote (their generations move on at commit)."""

    def _db(self, kind: str) -> Any:
        return self._store.handle(kind)

    def get(self, cls: type[R], key: bytes) -> R | None:
        """The record of ``cls`` at ``key``, or None."""
        raw = self._txn.get(key, db=self._db(cls.KIND))
        return None if raw is None else decode_cached(cls, bytes(raw))

    def put(self, record: Record, key: bytes | None = None) -> None:
        """Insert or replace ``record`` under its key (or ``key``: a kind kept in an order
        of its own, such as outbound routes)."""
        self._txn.put(
            record.key() if key is None else key, encode(record), db=self._db(record.KIND)
        )
        self.changed.add(record.KIND)

    def delete(self, cls: type[R], key: bytes) -> bool:
        """Remove the record at ``key``; False if there was none."""
        deleted = bool(self._txn.delete(key, db=self._db(cls.KIND)))
        if deleted:
            self.changed.add(cls.KIND)
        return deleted

    def clear(self, cls: type[R]) -> None:
        """Remove every record of ``cls``."""
        self._txn.drop(self._db(cls.KIND), delete=False)
        self.changed.add(cls.KIND)

    def generation(self, cls: type[Record]) -> int:
        """How many committed writes have changed records of ``cls`` (0: none yet)."""
        raw = self._txn.get(_generation_key(cls.KIND), db=self._db(META))
        return 0 if raw is None else int(msgpack.unpackb(raw))

    def _advance_generations(self) -> None:
        for kind in self.changed:
            key = _generation_key(kind)
            raw = self._txn.get(key, db=self._db(META))
            count = 0 if raw is None else int(msgpack.unpackb(raw))
            self._txn.put(key, msgpack.packb(count + 1), db=self._db(META))

    def scan(
        self,
        cls: type[R],
        start: bytes | None = None,
        end: bytes | None = None,
        prefix: bytes | None = None,
    ) -> Iterator[R]:
        """Records of ``cls`` in key order from ``start`` (inclusive) to ``end`` (exclusive).

        ``prefix`` limits the scan to keys that start with it.
        """
        if prefix is not None:
            start = max(start or prefix, prefix)
            limit = prefix_end(prefix)
            end = limit if end is None or (limit is not None and limit < end) else end
        with self._txn.cursor(db=self._db(cls.KIND)) as cursor:
            found = cursor.set_range(start) if start is not None else cursor.first()
            while found:
                key = bytes(cursor.key())
                if end is not None and key >= end:
                    break
                yield decode(cls, bytes(cursor.value()))
                found = cursor.next()

    def count(self, cls: type[R]) -> int:
        """How many records of ``cls`` there are."""
        return int(self._txn.stat(self._db(cls.KIND))["entries"])

    def counts(self) -> dict[str, int]:
        """How many records of each kind the store holds."""
        return {kind: self.count(cls) for kind, cls in self._store.kinds.items()}


class Store:
    """One LMDB environment holding every record kind in ``kinds``."""

    def __init__(self, env: lmdb.Environment, path: Path, kinds: Sequence[type[Record]]) -> None:
        self.path = path
        self.kinds = {k.KIND: k for k in kinds}
        self._env = env
        self._handles: dict[str, Any] = {}
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lmdb-writer")
        self._writer_thread: threading.Thread | None = None
        self._closed = False

    @classmethod
    def open(
        cls,
        path: Path,
        kinds: Sequence[type[Record]],
        *,
        map_size: int = 1 << 30,
        migrations: Mapping[str, Mapping[int, Migration]] = MIGRATIONS,
    ) -> Store:
        """Open (creating if needed) the store at ``path`` and bring its schemas up to date."""
        path.mkdir(parents=True, exist_ok=True)
        try:
            env = lmdb.open(str(path), map_size=map_size, max_dbs=len(kinds) + 8, subdir=True)
        except lmdb.Error as exc:
            raise StoreError(f"cannot open the store at {path}: {exc}") from None
        store = cls(env, path, kinds)
        try:
            store._writer.submit(store._prepare, migrations).result()
        except BaseException:
            store.close()
            raise
        return store

    def handle(self, kind: str) -> Any:
        """The LMDB handle of a sub-database."""
        try:
            return self._handles[kind]
        except KeyError:
            raise StoreError(f"the store has no record kind '{kind}'") from None

    def _prepare(self, migrations: Mapping[str, Mapping[int, Migration]]) -> None:
        """Open every sub-database and run pending migrations (on the writer thread)."""
        with self._env.begin(write=True) as raw:
            for kind in [META, *self.kinds]:
                self._handles[kind] = self._env.open_db(kind.encode(), txn=raw, create=True)
            meta = self._handles[META]
            stored_format = raw.get(b"format", db=meta)
            if stored_format is not None and msgpack.unpackb(stored_format) > STORE_FORMAT:
                raise StoreError(
                    f"the store at {self.path} was written by a newer Callbox "
                    f"(format {msgpack.unpackb(stored_format)}); upgrade Callbox to open it"
                )
            raw.put(b"format", msgpack.packb(STORE_FORMAT), db=meta)
            for kind, record_cls in self.kinds.items():
                self._migrate(raw, kind, record_cls.SCHEMA_VERSION, migrations.get(kind, {}))

    def _migrate(
        self,
        raw: lmdb.Transaction,
        kind: str,
        current: int,
        steps: Mapping[int, Migration],
    ) -> None:
        meta = self._handles[META]
        version_key = f"schema:{kind}".encode()
        stored = raw.get(version_key, db=meta)
        version = current if stored is None else int(msgpack.unpackb(stored))
        if version > current:
            raise StoreError(
                f"the store's {kind} records have schema version {version}, newer than this "
                f"Callbox's {current}; upgrade Callbox to open it"
            )
        while version < current:
            step = steps.get(version)
            if step is None:
                raise StoreError(f"no migration for {kind} records from schema version {version}")
            db = self._handles[kind]
            with raw.cursor(db=db) as cursor:
                rewritten = []
                for key, value in cursor:
                    _, data = decode_envelope(bytes(value))
                    rewritten.append((bytes(key), encode_envelope(version + 1, step(data))))
            for key, value in rewritten:
                raw.put(key, value, db=db)
            version += 1
        raw.put(version_key, msgpack.packb(current), db=meta)

    def _run_write(self, fn: Callable[[Txn], T]) -> T:
        self._writer_thread = threading.current_thread()
        with self._env.begin(write=True) as raw:
            txn = Txn(self, raw)
            result = fn(txn)
            txn._advance_generations()
            return result

    def write_sync(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn`` in a write transaction on the writer thread; commit if it returns."""
        if self._closed:
            raise StoreError("the store is closed")
        if threading.current_thread() is self._writer_thread:
            raise StoreError("a write may not start inside another write")
        return self._writer.submit(self._run_write, fn).result()

    async def write(self, fn: Callable[[Txn], T]) -> T:
        """``write_sync`` for coroutines: the loop goes on while the writer works."""
        if self._closed:
            raise StoreError("the store is closed")
        return await asyncio.wrap_future(self._writer.submit(self._run_write, fn))

    def read_sync(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn`` on a read snapshot in this thread."""
        if self._closed:
            raise StoreError("the store is closed")
        with self._env.begin() as raw:
            return fn(Txn(self, raw))

    async def read(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn`` on a read snapshot on the default executor."""
        return await asyncio.get_running_loop().run_in_executor(None, self.read_sync, fn)

    def counts(self) -> dict[str, int]:
        """How many records of each kind the store holds."""
        return self.read_sync(Txn.counts)

    def backup(self, destination: Path) -> None:
        """Write a compacted, consistent copy of the live store to the file ``destination``.

        Safe while the appliance runs (LMDB copies from a read snapshot). The
        copy is written beside the destination and renamed, so an interrupted
        backup never leaves a half file under the destination's name.
        """
        destination = destination.resolve()
        partial = destination.with_name(destination.name + ".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            self._env.copyfd(fd, compact=True)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            partial.unlink(missing_ok=True)
            raise
        os.close(fd)
        partial.replace(destination)

    def close(self) -> None:
        """Finish pending writes and close the environment."""
        if self._closed:
            return
        self._closed = True
        self._writer.shutdown(wait=True)
        self._env.close()
