"""The switch: owner of all live call state (SIP, call control, IVR, ACD, media).

It holds the store, answers the control API, runs the SIP stack with its
registrar and sessions, call control (``calls.py``: calls between
registered extensions, and inbound calls to configured numbers run by the
call center's IVR) and the media engine, whose events come onto the
loop through ``appliance.media``.
"""

from __future__ import annotations

import os
import ssl
import time
from typing import Any

import core
from appliance import __version__
from appliance.calls.legs import CallLimits
from appliance.config.records import CONFIG_RECORDS, Extension, OutboundRoute, Trunk
from appliance.media import MediaEvents
from appliance.service import StartupError
from appliance.settings import Settings
from appliance.sip.registrar import Registrar
from appliance.sip.security import SourceGuard
from appliance.sip.session import SessionManager
from appliance.sip.transport import TransportLimits
from appliance.sip.trunk import Trunks
from appliance.sip.ua import SipStack
from appliance.store import Store
from appliance.store.keys import name_key
from appliance.switch.callcenter import CallCenter
from appliance.switch.calls import CallControl


class Switch:
    """Live state of the switch process, as the control API reports it."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.started_monotonic = time.monotonic()
        self.started_at = time.time()
        self.registrar = Registrar(
            settings.sip.realm, self.extension, algorithms=settings.sip.digest.algorithms
        )
        self.guard = SourceGuard(settings.security)
        self.trunks = Trunks()
        self.sessions = SessionManager()
        security = settings.security
        limits = TransportLimits(
            messages_per_second=security.source_messages_per_s, burst=security.source_burst
        )
        self.sip = SipStack(
            limits,
            registrar=self.registrar,
            guard=self.guard,
            trunks=self.trunks,
            sessions=self.sessions,
        )
        self.callcenter = CallCenter(settings, store)
        self.engine: core.Engine | None = None
        self.media_events: MediaEvents | None = None
        self.calls = CallControl(
            self.sessions,
            self.registrar,
            self.extension,
            lambda: self.engine,
            lambda: self.media_events,
            self.guard.failed,
            CallLimits(settings.sip.no_answer_s, settings.rtp.timeout_s),
            trunks=self.trunks,
            callcenter=self.callcenter,
            routes=lambda: self.routes,
        )
        self.routes: list[OutboundRoute] = []
        """The outbound routes, in their order (``load_config``)."""

    def extension(self, number: str) -> Extension | None:
        """The configured extension ``number``, read now (an import may have changed it)."""
        # An LMDB read is a few microseconds and takes no lock: fine on the loop.
        return self.store.read_sync(lambda txn: txn.get(Extension, name_key(number)))

    async def load_trunks(self) -> None:
        """Apply the configured trunks (new ones start, removed or changed ones stop)."""
        self.trunks.configure(await self.store.read(lambda txn: list(txn.scan(Trunk))))

    async def config_generation(self) -> tuple[int, ...]:
        """The store's generations of every configuration record kind (changes on any write)."""
        return await self.store.read(lambda txn: tuple(txn.generation(c) for c in CONFIG_RECORDS))

    async def load_config(self) -> None:
        """Apply the configuration in the store: trunks and outbound routes, then numbers,
        flows, queues and agents."""
        await self.load_trunks()
        # Stored keys keep the routes in the order they were imported.
        self.routes = await self.store.read(lambda txn: list(txn.scan(OutboundRoute)))
        await self.callcenter.load()

    def tls_context(self) -> ssl.SSLContext | None:
        """The TLS listener's server context, or None when no certificate is configured."""
        sip = self.settings.sip
        if not sip.tls_enabled:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(sip.tls_certificate, sip.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise StartupError(
                f"cannot load the SIP TLS certificate {sip.tls_certificate} "
                f"with key {sip.tls_key}: {exc}"
            ) from None
        return context

    def start_media(self) -> None:
        """Start the media engine's workers on the configured RTP port range (on the loop)."""
        rtp = self.settings.rtp
        try:
            self.engine = core.Engine(
                workers=self.settings.media.workers,
                port_min=rtp.port_min,
                port_max=rtp.port_max,
                host=self.settings.sip.host,
            )
        except (RuntimeError, ValueError) as exc:
            raise StartupError(f"cannot start the media engine: {exc}") from None
        self.media_events = MediaEvents(self.engine)

    def stop_media(self) -> None:
        """Stop dispatching media events and the engine's workers."""
        if self.media_events is not None:
            self.media_events.close()
            self.media_events = None
        if self.engine is not None:
            self.engine.close()
            self.engine = None

    def listeners(self) -> dict[str, str | None]:
        """What this process listens on; None for a service not built yet."""
        control = self.settings.control
        listeners = {"control": f"unix:{self.settings.control_socket}"}
        if control.tcp_port:
            listeners["control_tcp"] = f"http://{control.tcp_host}:{control.tcp_port}"
        return {**listeners, "sip": self.sip.where()}

    async def status(self) -> dict[str, Any]:
        """A snapshot for ``callbox status`` and the web UI."""

        counts = await self.store.read(lambda txn: txn.counts())
        return {
            "version": __version__,
            "pid": os.getpid(),
            "started_at": self.started_at,
            "uptime_s": round(time.monotonic() - self.started_monotonic, 3),
            "data_dir": str(self.settings.data_path),
            "listeners": self.listeners(),
            "media_core": {
                "implementation": core.IMPLEMENTATION,
                "libraries": core.library_versions(),
                "workers": self.engine.workers if self.engine else 0,
                "rtp_ports": f"{self.settings.rtp.port_min}-{self.settings.rtp.port_max}",
            },
            "store": {
                "path": str(self.store.path),
                "records": counts,
            },
            "registrations": self.registrar.status(),
            "trunks": self.trunks.status(),
            "banned": self.guard.bans(),
            "calls": await self.calls.status(),
            "agents": self.callcenter.agents_status(),
            "queues": self.callcenter.queues_status(),
        }
