"""The registrar's rules (RFC 3261 10.3) on a driven clock: digest, expiry, limits, removal."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest

from appliance.config.records import Extension
from appliance.sip.auth import authorization
from appliance.sip.message import Request, Response, parse_message
from appliance.sip.registrar import (
    Registrar,
    RegistrarLimits,
    RegistrationChange,
    RegistrationEvent,
    keepalive_request,
)
from appliance.sip.transport import Flow
from tests.sip.test_transaction import ManualClock

EXTENSIONS = {
    "1001": Extension(number="1001", password="phone-1001-secret", max_contacts=2),
    "1002": Extension(number="1002", password="phone-1002-secret", networks=["10.0.0.0/8"]),
}


@dataclass
class WallClock:
    """A time source the test moves (seconds since the epoch by default)."""

    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Setup:
    registrar: Registrar
    clock: ManualClock
    wall: WallClock
    events: list[RegistrationEvent] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)


@pytest.fixture
def setup() -> Setup:
    clock = ManualClock()
    wall = WallClock()
    registrar = Registrar(
        "callbox",
        EXTENSIONS.get,
        limits=RegistrarLimits(min_expires=60, max_expires=3600, default_expires=600),
        clock=clock,
        now=lambda: clock.now,
        wall_clock=wall,
        algorithms=("SHA-256", "MD5"),
    )
    result = Setup(registrar, clock, wall)
    registrar.add_listener(result.events.append)
    registrar.auth_failed = lambda source, reason: result.failures.append((source, reason))
    return result


def flow(remote: tuple[str, int] = ("192.0.2.7", 5060)) -> Flow:
    return Flow("UDP", remote, ("192.0.2.1", 5060), lambda data: None)


class Phone:
    """Builds a phone's REGISTERs, answering the registrar's last challenge."""

    def __init__(
        self,
        registrar: Registrar,
        number: str = "1001",
        password: str = "phone-1001-secret",
        request_uri: str = "sip:callbox",
    ) -> None:
        self.registrar = registrar
        self.request_uri = request_uri
        self.number = number
        self.password = password
        self.call_id = f"reg-{number}@192.0.2.7"
        self.cseq = itertools.count(1)
        self.challenge: str | None = None
        self.nc = 0

    def request(self, *headers: str, authorize: bool = True) -> Request:
        lines = "".join(f"{h}\r\n" for h in headers)
        if authorize and self.challenge is not None:
            self.nc += 1
            value = authorization(
                self.challenge,
                method="REGISTER",
                uri=self.request_uri,
                username=self.number,
                password=self.password,
                nc=self.nc,
            )
            lines += f"Authorization: {value}\r\n"
        cseq = next(self.cseq)
        request = parse_message(
            (
                f"REGISTER {self.request_uri} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 192.0.2.7;branch=z9hG4bK{cseq}x\r\n"
                f"Max-Forwards: 70\r\nFrom: <sip:{self.number}@callbox>;tag=p1\r\n"
                f"To: <sip:{self.number}@callbox>\r\nCall-ID: {self.call_id}\r\n"
                f"CSeq: {cseq} REGISTER\r\n{lines}"
                "Content-Length: 0\r\n\r\n"
            ).encode()
        )
        assert isinstance(request, Request)
        return request

    def send(self, *headers: str, remote: tuple[str, int] = ("192.0.2.7", 5060)) -> Response:
        """One REGISTER; a 401 is answered once with credentials, as phones do."""
        return self.send_on(flow(remote), *headers)

    def send_on(self, over: Flow, *headers: str) -> Response:
        """``send`` over a given flow."""
        response = self.registrar.register(self.request(*headers), over)
        if response.status == 401:
            self.challenge = response.headers.values("WWW-Authenticate")[0]
            self.nc = 0
            response = self.registrar.register(self.request(*headers), over)
        return response


def contacts_of(response: Response) -> list[str]:
    return response.headers.values("Contact")


def test_register_without_credentials_is_challenged_sha256_first_then_md5(setup: Setup) -> None:
    phone = Phone(setup.registrar)
    response = setup.registrar.register(phone.request("Contact: <sip:1001@192.0.2.7>"), flow())
    assert response.status == 401
    challenges = response.headers.lines("WWW-Authenticate")
    assert [c.split("algorithm=")[1].split(",")[0] for c in challenges] == ["SHA-256", "MD5"]
    assert all('qop="auth"' in c and 'realm="callbox"' in c for c in challenges)
    assert setup.registrar.bindings == {}


def test_digest_register_binds_the_contact_until_it_expires(setup: Setup) -> None:
    response = Phone(setup.registrar).send("Contact: <sip:1001@192.0.2.7>", "Expires: 120")
    assert response.status == 200
    assert contacts_of(response) == ["<sip:1001@192.0.2.7>;expires=120"]
    assert setup.events == [
        RegistrationEvent(
            RegistrationChange.REGISTERED, "1001", "sip:1001@192.0.2.7", "udp 192.0.2.7:5060"
        )
    ]
    setup.clock.advance(119)
    assert len(setup.registrar.contacts("1001")) == 1
    setup.clock.advance(1)
    assert setup.registrar.contacts("1001") == []
    assert setup.events[-1].change is RegistrationChange.EXPIRED


def test_refresh_extends_the_binding_without_a_new_registered_event(setup: Setup) -> None:
    phone = Phone(setup.registrar)
    phone.send("Contact: <sip:1001@192.0.2.7>", "Expires: 120")
    setup.clock.advance(100)
    response = phone.send("Contact: <sip:1001@192.0.2.7>;expires=120")
    assert contacts_of(response) == ["<sip:1001@192.0.2.7>;expires=120"]
    setup.clock.advance(100)
    assert len(setup.registrar.contacts("1001")) == 1
    assert [e.change for e in setup.events] == [RegistrationChange.REGISTERED]
    setup.clock.advance(20)
    assert [e.change for e in setup.events][-1] is RegistrationChange.EXPIRED


def test_expiry_below_the_minimum_gets_423_with_min_expires(setup: Setup) -> None:
    response = Phone(setup.registrar).send("Contact: <sip:1001@192.0.2.7>", "Expires: 30")
    assert (response.status, response.reason) == (423, "Interval Too Brief")
    assert response.headers.get("Min-Expires") == "60"
    assert setup.registrar.bindings == {}


def test_expiry_is_capped_at_the_maximum_and_defaults_when_absent(setup: Setup) -> None:
    phone = Phone(setup.registrar)
    response = phone.send("Contact: <sip:1001@192.0.2.7>;expires=86400")
    assert contacts_of(response) == ["<sip:1001@192.0.2.7>;expires=3600"]
    response = phone.send("Contact: <sip:1001@192.0.2.8>")
    assert "<sip:1001@192.0.2.8>;expires=600" in contacts_of(response)


def test_query_without_contact_lists_bindings_and_changes_nothing(setup: Setup) -> None:
    phone = Phone(setup.registrar)
    phone.send("Contact: <sip:1001@192.0.2.7>", "Expires: 300")
    setup.clock.advance(50)
    response = phone.send()
    assert response.status == 200
    assert contacts_of(response) == ["<sip:1001@192.0.2.7>;expires=250"]
    assert len(setup.events) == 1


def test_expires_zero_removes_one_contact_and_star_removes_all(setup: Setup) -> None:
    phone = Phone(setup.registrar)
    phone.send("Contact: <sip:1001@192.0.2.7>, <sip:1001@192.0.2.8>", "Expires: 300")
    assert len(setup.registrar.contacts("1001")) == 2
    response = phone.send("Contact: <sip:1001@192.0.2.7>;expires=0")
    assert contacts_of(response) == ["<sip:1001@192.0.2.8>;expires=300"]
    response = phone.send("Contact: *", "Expires: 0")
    assert (response.status, contacts_of(response)) == (200, [])
    changes = [e.change for e in setup.events]
    assert changes == [RegistrationChange.REGISTERED] * 2 + [RegistrationChange.UNREGISTERED] * 2


def test_star_without_expires_zero_is_a_bad_request(setup: Setup) -> None:
    assert Phone(setup.registrar).send("Contact: *", "Expires: 60").status == 400


def test_contacts_over_the_limit_in_one_request_are_refused(setup: Setup) -> None:
    contacts = ", ".join(f"<sip:1001@192.0.2.{i}>" for i in range(3))
    response = Phone(setup.registrar).send(f"Contact: {contacts}")
    assert response.status == 403
    assert setup.registrar.bindings == {}


def test_a_new_device_over_the_limit_replaces_the_oldest_binding(setup: Setup) -> None:
    phone = Phone(setup.registrar)
    for i in range(3):
        phone.send(f"Contact: <sip:1001@192.0.2.{i}>")
    assert [str(b.contact.uri) for b in setup.registrar.contacts("1001")] == [
        "sip:1001@192.0.2.1",
        "sip:1001@192.0.2.2",
    ]
    assert setup.events[-1] == RegistrationEvent(
        RegistrationChange.UNREGISTERED, "1001", "sip:1001@192.0.2.0", "udp 192.0.2.7:5060"
    )


def test_wrong_password_is_forbidden_and_reported_for_the_source(setup: Setup) -> None:
    phone = Phone(setup.registrar, password="guessed-wrong")
    response = phone.send("Contact: <sip:1001@192.0.2.7>")
    assert response.status == 403
    assert setup.failures == [("192.0.2.7", "wrong response")]
    assert setup.registrar.bindings == {}


def test_credentials_of_another_extension_are_forbidden(setup: Setup) -> None:
    phone = Phone(setup.registrar, number="1001")
    phone.send("Contact: <sip:1001@192.0.2.7>")
    assert phone.challenge is not None
    thief = Phone(setup.registrar, number="1002")
    # 1001's own valid credentials, on a REGISTER for 1002.
    thief.challenge, thief.number, thief.nc = phone.challenge, "1001", phone.nc
    request = thief.request("Contact: <sip:evil@192.0.2.66>")
    request.headers.set("To", "<sip:1002@callbox>")
    response = setup.registrar.register(request, flow())
    assert (response.status, response.reason) == (403, "Username does not match the To user")


def test_an_extension_limited_to_networks_is_refused_elsewhere(setup: Setup) -> None:
    phone = Phone(setup.registrar, number="1002", password="phone-1002-secret")
    assert phone.send("Contact: <sip:1002@192.0.2.7>").status == 403
    assert setup.failures == [("192.0.2.7", "outside the extension's networks")]
    response = phone.send("Contact: <sip:1002@10.1.2.3>", remote=("10.1.2.3", 5060))
    assert response.status == 200


def test_an_old_nonce_is_challenged_again_as_stale(setup: Setup) -> None:
    phone = Phone(setup.registrar)
    phone.send("Contact: <sip:1001@192.0.2.7>")
    setup.wall.now += 3600
    response = setup.registrar.register(phone.request("Contact: <sip:1001@192.0.2.7>"), flow())
    assert response.status == 401
    assert all("stale=true" in c for c in response.headers.lines("WWW-Authenticate"))
    assert setup.failures == []


def test_a_late_register_from_the_same_call_is_refused_as_out_of_order(setup: Setup) -> None:
    phone = Phone(setup.registrar)
    phone.send("Contact: <sip:1001@192.0.2.7>")
    late = phone.request("Contact: <sip:1001@192.0.2.7>")
    late.headers.set("CSeq", "1 REGISTER")
    response = setup.registrar.register(late, flow())
    assert (response.status, response.reason) == (500, "Out of order REGISTER")


def test_binding_keeps_the_source_flow_of_a_phone_behind_nat(setup: Setup) -> None:
    Phone(setup.registrar).send("Contact: <sip:1001@10.0.0.5:5062>", remote=("198.51.100.4", 40712))
    (binding,) = setup.registrar.contacts("1001")
    assert binding.behind_nat
    assert binding.flow.remote == ("198.51.100.4", 40712)
    assert setup.registrar.status() == [
        {
            "extension": "1001",
            "contact": "sip:1001@10.0.0.5:5062",
            "source": "udp 198.51.100.4:40712",
            "expires_in": 600,
            "nat": True,
            "user_agent": "",
        }
    ]


def test_keepalive_via_names_the_address_the_phone_registered_to_behind_a_wildcard(
    setup: Setup,
) -> None:
    phone = Phone(setup.registrar, request_uri="sip:192.0.2.1")
    wildcard = Flow("UDP", ("198.51.100.4", 40712), ("0.0.0.0", 5060), lambda data: None)
    assert phone.send_on(wildcard, "Contact: <sip:1001@10.0.0.5:5062>").status == 200
    options = keepalive_request(setup.registrar.contacts("1001")[0])
    assert options.method == "OPTIONS"
    assert str(options.uri) == "sip:1001@10.0.0.5:5062"
    assert options.top_via.sent_by == ("192.0.2.1", 5060)
