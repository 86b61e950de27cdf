"""Callbox's own SIP stack, one module per RFC 3261 layer.

``message`` (parse and serialise), ``transport`` (UDP/TCP on asyncio),
``transaction`` (the four section 17 state machines) and ``ua`` (the
out-of-dialog UA core of the switch).
"""

from __future__ import annotations
