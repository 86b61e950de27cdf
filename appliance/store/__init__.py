"""The embedded store: LMDB, typed records, migrations, hot backup.

See ``db.Store`` for the threading rules and ``records`` for the value format.
"""

from appliance.store.db import Store, Txn
from appliance.store.keys import name_key, prefix_end, time_key, time_of
from appliance.store.records import Record, StoreError

__all__ = [
    "Record",
    "Store",
    "StoreError",
    "Txn",
    "name_key",
    "prefix_end",
    "time_key",
    "time_of",
]
