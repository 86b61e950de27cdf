"""Why a call ended: Q.850 causes, SIP status codes (RFC 3398) and the Reason header (RFC 3326).

Call control speaks Q.850 (the cause an E1 span or ISUP carries, and what
the call record stores); SIP speaks status codes. ``status_for_cause`` is
RFC 3398 8.2.6.1 (ISUP cause to SIP response) and ``cause_for_status`` is
its 7.2.4.1 (SIP response to ISUP cause). Where the RFC gives no mapping,
the cause's class decides (Q.850 groups causes by their tens), so every
cause and every status has one.

``Reason`` is one value of the Reason header: ``Q.850;cause=16;text="..."``
on a BYE or CANCEL says which cause ended the call, and
``SIP;cause=200;text="Call completed elsewhere"`` on a CANCEL tells a
forked phone that another one answered.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from appliance.sip.message import Message, SipParseError, quote, split_list, unquote


class Cause(enum.IntEnum):
    """Q.850 cause values (ITU-T Q.850 table 1) that a SIP call can meet."""

    UNALLOCATED_NUMBER = 1
    NO_ROUTE_TRANSIT_NETWORK = 2
    NO_ROUTE_DESTINATION = 3
    NORMAL_CLEARING = 16
    USER_BUSY = 17
    NO_USER_RESPONSE = 18
    NO_ANSWER = 19
    SUBSCRIBER_ABSENT = 20
    CALL_REJECTED = 21
    NUMBER_CHANGED = 22
    REDIRECTED = 23
    EXCHANGE_ROUTING_ERROR = 25
    NON_SELECTED_USER_CLEARING = 26
    DESTINATION_OUT_OF_ORDER = 27
    INVALID_NUMBER_FORMAT = 28
    FACILITY_REJECTED = 29
    NORMAL_UNSPECIFIED = 31
    NO_CIRCUIT_AVAILABLE = 34
    NETWORK_OUT_OF_ORDER = 38
    TEMPORARY_FAILURE = 41
    SWITCHING_EQUIPMENT_CONGESTION = 42
    RESOURCE_UNAVAILABLE = 47
    INCOMING_CALLS_BARRED_IN_CUG = 55
    BEARER_CAPABILITY_NOT_AUTHORIZED = 57
    BEARER_CAPABILITY_NOT_AVAILABLE = 58
    SERVICE_UNAVAILABLE = 63
    BEARER_CAPABILITY_NOT_IMPLEMENTED = 65
    ONLY_RESTRICTED_DIGITAL = 70
    SERVICE_NOT_IMPLEMENTED = 79
    USER_NOT_MEMBER_OF_CUG = 87
    INCOMPATIBLE_DESTINATION = 88
    RECOVERY_ON_TIMER_EXPIRY = 102
    PROTOCOL_ERROR = 111
    INTERWORKING = 127

    @property
    def text(self) -> str:
        """A readable name for logs and Reason ``text``: "user busy"."""
        return self.name.lower().replace("_", " ")


# RFC 3398 8.2.6.1. NORMAL_CLEARING has no response: it ends a call with BYE or CANCEL.
_STATUS_FOR_CAUSE: dict[int, int] = {
    1: 404, 2: 404, 3: 404, 17: 486, 18: 408, 19: 480, 20: 480, 21: 403, 22: 410,
    23: 410, 26: 404, 27: 502, 28: 484, 29: 501, 31: 480, 34: 503, 38: 503, 41: 503,
    42: 503, 47: 503, 55: 403, 57: 403, 58: 503, 65: 488, 70: 488, 79: 501, 87: 403,
    88: 503, 102: 504, 111: 500, 127: 500,
}  # fmt: skip

# RFC 3398 7.2.4.1; 488 and 606 depend on a Warning there: we only send them for
# codecs, so bearer capability. 487 has no cause in the RFC: the caller gave up.
_CAUSE_FOR_STATUS: dict[int, int] = {
    400: 41, 401: 21, 402: 21, 403: 21, 404: 1, 405: 63, 406: 79, 407: 21, 408: 102,
    410: 22, 413: 127, 414: 127, 415: 79, 416: 127, 420: 127, 421: 127, 423: 127,
    480: 18, 481: 41, 482: 25, 483: 25, 484: 28, 485: 1, 486: 17, 487: 16, 488: 65,
    500: 41, 501: 79, 502: 38, 503: 41, 504: 102, 505: 127, 513: 127, 600: 17, 603: 21,
    604: 1, 606: 65,
}  # fmt: skip

REASON_PHRASES = {
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    410: "Gone",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    484: "Address Incomplete",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    600: "Busy Everywhere",
    603: "Decline",
}
"""RFC 3261 21: the phrase for each status ``status_for_cause`` can return, and 481
(a transfer whose Replaces names no dialog)."""


def status_for_cause(cause: int) -> int:
    """The SIP final response for a Q.850 cause (RFC 3398 8.2.6.1).

    Causes the RFC does not list follow their class: normal events (up to
    31) 480, resource unavailable (32-47) 503, service or option
    unavailable or not implemented (48-79) 501 and 488 for bearer ones,
    everything else 500.
    """
    if cause in _STATUS_FOR_CAUSE:
        return _STATUS_FOR_CAUSE[cause]
    if cause <= 31:
        return 480
    if cause <= 47:
        return 503
    if cause <= 79:
        return 488 if cause in (57, 58, 65, 66, 70) else 501
    return 500


def cause_for_status(status: int) -> Cause:
    """The Q.850 cause for a SIP final response (RFC 3398 7.2.4.1); 2xx is normal clearing.

    Statuses the RFC does not list follow their class: 3xx redirection
    (23), 4xx call rejected (21), 5xx temporary failure (41), 6xx call
    rejected (21).
    """
    if status < 300:
        return Cause.NORMAL_CLEARING
    if status in _CAUSE_FOR_STATUS:
        return Cause(_CAUSE_FOR_STATUS[status])
    if status < 400:
        return Cause.REDIRECTED
    if status < 500 or status >= 600:
        return Cause.CALL_REJECTED
    return Cause.TEMPORARY_FAILURE


def reason_phrase(status: int) -> str:
    """The RFC 3261 reason phrase for a final status this module maps to."""
    return REASON_PHRASES.get(status, "Call Failed")


@dataclass(frozen=True)
class Reason:
    """One Reason header value (RFC 3326): protocol, cause and optional text."""

    protocol: str
    cause: int
    text: str | None = None

    @classmethod
    def q850(cls, cause: int) -> Reason:
        """``Q.850;cause=N;text="..."`` for a cause."""
        known = cause in Cause._value2member_map_
        return cls("Q.850", cause, Cause(cause).text if known else None)

    @property
    def q850_cause(self) -> Cause | None:
        """The Q.850 cause this value carries (a SIP one is mapped), or None."""
        if self.protocol.upper() == "Q.850":
            return Cause(self.cause) if self.cause in Cause._value2member_map_ else None
        if self.protocol.upper() == "SIP":
            return cause_for_status(self.cause)
        return None

    def __str__(self) -> str:
        text = f";text={quote(self.text)}" if self.text is not None else ""
        return f"{self.protocol};cause={self.cause}{text}"


def parse_reason(value: str) -> Reason:
    """Parse one Reason value; ``SipParseError`` names what is wrong."""
    protocol, *params = (part.strip(" \t") for part in _split_params(value))
    if not protocol or not all(c.isalnum() or c in ".-_" for c in protocol):
        raise SipParseError(f"Bad Reason: protocol {protocol!r}")
    fields: dict[str, str] = {}
    for param in params:
        name, eq, raw = param.partition("=")
        fields[name.strip(" \t").lower()] = unquote(raw.strip(" \t")) if eq else ""
    cause = fields.get("cause", "")
    if not cause.isdigit() or not cause.isascii() or len(cause) > 5:
        raise SipParseError(f"Bad Reason: cause {cause!r}")
    return Reason(protocol, int(cause), fields.get("text"))


def _split_params(value: str) -> list[str]:
    """Split at semicolons outside quoted strings."""
    parts, start, quoted, i = [], 0, False, 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and quoted:
            i += 1
        elif ch == '"':
            quoted = not quoted
        elif ch == ";" and not quoted:
            parts.append(value[start:i])
            start = i + 1
        i += 1
    parts.append(value[start:])
    return parts


def reasons(message: Message) -> list[Reason]:
    """Every readable Reason value of a message (unreadable ones are skipped)."""
    found = []
    for line in message.headers.lines("Reason"):
        for value in split_list(line):
            try:
                found.append(parse_reason(value))
            except SipParseError:
                continue
    return found


def cause_of(message: Message, default: Cause = Cause.NORMAL_CLEARING) -> Cause:
    """The Q.850 cause a BYE or CANCEL carries (a Q.850 value first), else ``default``."""
    found = reasons(message)
    for reason in sorted(found, key=lambda r: r.protocol.upper() != "Q.850"):
        cause = reason.q850_cause
        if cause is not None:
            return cause
    return default


def add_reasons(message: Message, values: Iterable[Reason]) -> None:
    """Add Reason header fields to an outgoing BYE, CANCEL or response."""
    for reason in values:
        message.headers.add("Reason", str(reason))
