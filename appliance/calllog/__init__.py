"""Call records and the queue event log: what every call did, kept in the store for reports."""

from appliance.calllog.journal import CallJournal
from appliance.calllog.records import (
    CALL_LOG_RECORDS,
    CallOutcome,
    CallRecord,
    QueueEvent,
    QueueEventKind,
)
from appliance.calllog.service import CallLog

__all__ = [
    "CALL_LOG_RECORDS",
    "CallJournal",
    "CallLog",
    "CallOutcome",
    "CallRecord",
    "QueueEvent",
    "QueueEventKind",
]
