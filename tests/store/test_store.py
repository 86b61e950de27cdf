"""The LMDB store: typed records, range scans, one writer thread, migrations, backup."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import lmdb
import msgpack
import pytest

from appliance.store import Store, StoreError, Txn, name_key, time_key, time_of
from appliance.store.keys import prefix_end


@dataclass(frozen=True)
class CallStub:
    """A call-like record keyed by start time, as call records will be."""

    KIND: ClassVar[str] = "calls"
    SCHEMA_VERSION: ClassVar[int] = 1

    id: str
    start_us: int
    caller: str = ""

    def key(self) -> bytes:
        return time_key(self.start_us, self.id.encode())


@dataclass(frozen=True)
class Contact:
    KIND: ClassVar[str] = "contacts"
    SCHEMA_VERSION: ClassVar[int] = 1

    name: str
    phone: str

    def key(self) -> bytes:
        return name_key(self.name)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(tmp_path / "db", [CallStub, Contact], map_size=64 << 20)
    yield opened
    opened.close()


def test_put_get_delete_round_trip(store: Store) -> None:
    store.write_sync(lambda txn: txn.put(Contact("alice", "+8613800000000")))
    assert store.read_sync(lambda txn: txn.get(Contact, name_key("alice"))) == Contact(
        "alice", "+8613800000000"
    )
    assert store.write_sync(lambda txn: txn.delete(Contact, name_key("alice"))) is True
    assert store.read_sync(lambda txn: txn.get(Contact, name_key("alice"))) is None


def test_time_keys_scan_a_time_range_in_order(store: Store) -> None:
    calls = [CallStub(f"c{i}", 1_700_000_000_000_000 + i * 1_000_000) for i in (5, 1, 3, 2, 4)]

    def insert(txn: Txn) -> None:
        for call in calls:
            txn.put(call)

    store.write_sync(insert)
    start = time_key(1_700_000_000_000_000 + 2_000_000)
    end = time_key(1_700_000_000_000_000 + 4_000_000)
    found = store.read_sync(lambda txn: [c.id for c in txn.scan(CallStub, start, end)])
    assert found == ["c2", "c3"]
    everything = store.read_sync(lambda txn: [c.id for c in txn.scan(CallStub)])
    assert everything == ["c1", "c2", "c3", "c4", "c5"]


def test_time_key_sorts_bytewise_like_the_numbers() -> None:
    times = [0, 1, 255, 256, 65535, 1 << 40, (1 << 64) - 1]
    keys = [time_key(t) for t in times]
    assert sorted(keys) == keys
    assert [time_of(k) for k in keys] == times
    with pytest.raises(ValueError, match="microseconds"):
        time_key(-1)


def test_prefix_scan_stops_at_the_end_of_the_prefix(store: Store) -> None:
    def insert(txn: Txn) -> None:
        for name in ["ann", "bob", "bobby", "bo", "carl"]:
            txn.put(Contact(name, "1"))

    store.write_sync(insert)
    found = store.read_sync(lambda txn: [c.name for c in txn.scan(Contact, prefix=b"bob")])
    assert found == ["bob", "bobby"]
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") is None


def test_every_write_runs_on_the_one_writer_thread(store: Store) -> None:
    threads: set[str] = set()

    def record_thread(txn: Txn) -> None:
        threads.add(threading.current_thread().name)
        txn.put(Contact(threading.current_thread().name, "1"))

    workers = [threading.Thread(target=store.write_sync, args=(record_thread,)) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(threads) == 1
    assert next(iter(threads)).startswith("lmdb-writer")


def test_a_failing_write_commits_nothing(store: Store) -> None:
    def half_then_fail(txn: Txn) -> None:
        txn.put(Contact("ann", "1"))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        store.write_sync(half_then_fail)
    assert store.read_sync(lambda txn: txn.count(Contact)) == 0


def test_a_kinds_generation_moves_on_with_each_write_that_changes_it_and_only_then(
    tmp_path: Path, store: Store
) -> None:
    def generations() -> tuple[int, int]:
        return store.read_sync(lambda txn: (txn.generation(Contact), txn.generation(CallStub)))

    assert generations() == (0, 0)
    store.write_sync(lambda txn: txn.put(Contact("ann", "1")))
    assert generations() == (1, 0)
    store.write_sync(lambda txn: txn.put(CallStub("c1", 1)))
    assert generations() == (1, 1)
    assert store.write_sync(lambda txn: txn.delete(Contact, name_key("nobody"))) is False
    store.write_sync(lambda txn: txn.get(Contact, name_key("ann")))  # a write that changes nothing
    assert generations() == (1, 1)

    def clear_and_refill(txn: Txn) -> None:
        txn.clear(Contact)
        txn.put(Contact("bob", "2"))

    store.write_sync(clear_and_refill)  # one transaction: one step, however many changes
    assert generations() == (2, 1)

    def put_then_fail(txn: Txn) -> None:
        txn.put(Contact("carl", "3"))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        store.write_sync(put_then_fail)
    assert generations() == (2, 1)  # a failed write commits no generation either
    store.close()
    reopened = Store.open(tmp_path / "db", [CallStub, Contact], map_size=64 << 20)
    try:
        assert reopened.read_sync(lambda txn: txn.generation(Contact)) == 2  # kept on disk
    finally:
        reopened.close()


def test_nested_write_is_refused_instead_of_deadlocking(store: Store) -> None:
    def nested(txn: Txn) -> None:
        store.write_sync(lambda inner: None)

    with pytest.raises(StoreError, match="inside another write"):
        store.write_sync(nested)


async def test_async_reads_and_writes_leave_the_event_loop_free(store: Store) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())

    def slow_write(txn: Txn) -> None:
        txn.put(Contact("slow", "1"))
        time.sleep(0.2)  # the loop must keep ticking meanwhile

    await store.write(slow_write)
    record = await store.read(lambda txn: txn.get(Contact, name_key("slow")))
    task.cancel()
    assert record == Contact("slow", "1")
    assert ticks > 10


def test_records_that_fail_their_schema_are_reported(tmp_path: Path) -> None:
    Store.open(tmp_path / "db", [Contact]).close()
    env = lmdb.open(str(tmp_path / "db"), max_dbs=8)
    with env.begin(write=True) as txn:
        db = env.open_db(b"contacts", txn=txn)
        txn.put(b"x", msgpack.packb({"v": 1, "d": {"name": "x"}}), db=db)
    env.close()
    store = Store.open(tmp_path / "db", [Contact])
    with pytest.raises(StoreError, match=r"does not fit its schema.*'phone' is required"):
        store.read_sync(lambda txn: txn.get(Contact, b"x"))
    store.close()


def test_migration_upgrades_stored_records_when_the_store_opens(tmp_path: Path) -> None:
    old = Store.open(tmp_path / "db", [Contact])
    old.write_sync(lambda txn: txn.put(Contact("ann", "13800000000")))
    old.close()

    @dataclass(frozen=True)
    class ContactV2:
        KIND: ClassVar[str] = "contacts"
        SCHEMA_VERSION: ClassVar[int] = 2

        name: str
        phones: list[str]

        def key(self) -> bytes:
            return name_key(self.name)

    def v1_to_v2(data: dict[str, str]) -> dict[str, object]:
        return {"name": data["name"], "phones": [data["phone"]]}

    new = Store.open(tmp_path / "db", [ContactV2], migrations={"contacts": {1: v1_to_v2}})
    assert new.read_sync(lambda txn: txn.get(ContactV2, name_key("ann"))) == ContactV2(
        "ann", ["13800000000"]
    )
    new.close()
    # The old code must not read what the new schema wrote.
    with pytest.raises(StoreError, match="newer than this Callbox's 1"):
        Store.open(tmp_path / "db", [Contact])


def test_missing_migration_stops_the_open(tmp_path: Path) -> None:
    Store.open(tmp_path / "db", [Contact]).close()

    @dataclass(frozen=True)
    class ContactV3:
        KIND: ClassVar[str] = "contacts"
        SCHEMA_VERSION: ClassVar[int] = 3
        name: str

        def key(self) -> bytes:
            return name_key(self.name)

    with pytest.raises(StoreError, match="no migration for contacts records from schema version 1"):
        Store.open(tmp_path / "db", [ContactV3])


def test_backup_is_a_compact_openable_copy_taken_while_open(store: Store, tmp_path: Path) -> None:
    def fill(txn: Txn) -> None:
        for i in range(2000):
            txn.put(Contact(f"n{i:05d}", "x" * 100))

    store.write_sync(fill)
    store.write_sync(lambda txn: [txn.delete(Contact, name_key(f"n{i:05d}")) for i in range(1500)])
    backup = tmp_path / "backup.mdb"
    store.backup(backup)
    assert not (tmp_path / "backup.mdb.partial").exists()
    assert backup.is_file()  # one file, ready to copy off the box
    env = lmdb.open(str(backup), subdir=False, readonly=True, max_dbs=8, lock=False)
    with env.begin() as txn:
        db = env.open_db(b"contacts", txn=txn, create=False)
        assert txn.stat(db)["entries"] == 500
    env.close()
    live_size = (store.path / "data.mdb").stat().st_size
    assert backup.stat().st_size < live_size
