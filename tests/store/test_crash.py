"""A process killed with SIGKILL in the middle of writes loses no committed record."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from appliance.config.records import Skill
from appliance.store import Store

BATCH = 200

WRITER = textwrap.dedent(
    f"""
    import sys
    from pathlib import Path
    from appliance.config.records import Skill
    from appliance.store import Store

    store = Store.open(Path(sys.argv[1]), [Skill])
    batch = 0
    while True:
        def write(txn, batch=batch):
            for i in range({BATCH}):
                txn.put(Skill(name=f"b{{batch:06d}}-{{i:04d}}", label="x" * 200))
        store.write_sync(write)
        print(batch, flush=True)   # only after the commit returned
        batch += 1
    """
)


def test_sigkill_mid_write_keeps_committed_batches_and_drops_the_rest(tmp_path: Path) -> None:
    db = tmp_path / "db"
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    reported: list[int] = []
    deadline = time.monotonic() + 60
    # Let it commit a good number of batches, then kill it wherever it is.
    while len(reported) < 25 and time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        reported.append(int(line))
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()
    assert len(reported) == 25, "the writer did not get going"

    store = Store.open(db, [Skill])
    names = store.read_sync(lambda txn: [s.name for s in txn.scan(Skill)])
    store.close()
    batches: dict[int, int] = {}
    for name in names:
        number = int(name[1:7])
        batches[number] = batches.get(number, 0) + 1
    # Every batch reported as committed is there, whole.
    for batch in reported:
        assert batches.get(batch) == BATCH
    # Nothing partial: each batch present is complete (a transaction is atomic), and at
    # most one batch beyond the last reported one (committed before its print) exists.
    assert all(count == BATCH for count in batches.values())
    assert max(batches) <= reported[-1] + 1
