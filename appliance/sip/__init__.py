"""Callbox's own SIP stack, one module per RFC 3261 layer.

``message`` (parse and serialise), ``transport`` (UDP/TCP/TLS on asyncio),
``transaction`` (the four section 17 state machines), ``dialog``, ``sdp``,
``auth``, ``registrar``, ``session`` (calls for the B2BUA), ``refer``
(transfers), ``causes`` (Q.850 and SIP statuses) and ``ua`` (the UA core
and the stack).
"""

from __future__ import annotations
