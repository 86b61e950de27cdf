"""Trunk rules on messages: numbers, caller ID, trust, challenges, routes, outbound INVITEs."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.cli import format_status
from appliance.config import load_document
from appliance.config.records import Codec, DialledFrom, Extension, Transport, Trunk, TrunkMode
from appliance.numbers import normalise_number
from appliance.schema import ConfigError
from appliance.settings import SecuritySettings
from appliance.sip.auth import ClientCredentials, DigestChallenger, Verdict, authorization
from appliance.sip.identity import CallerId, caller_id
from appliance.sip.message import Request, Response, parse_message
from appliance.sip.registrar import Registrar
from appliance.sip.sdp import parse_sdp
from appliance.sip.security import SourceGuard
from appliance.sip.trunk import NoRoute, Reachability, RegistrationState, TrunkError, Trunks
from appliance.sip.ua import SipStack
from tests.sip.test_security import request

GATEWAY = Trunk(
    name="gateway", mode=TrunkMode.IP, host="192.0.2.10", allow=["198.51.100.0/24"],
    options_interval=0,
)  # fmt: skip
PROVIDER = Trunk(
    name="provider", mode=TrunkMode.REGISTER, host="203.0.113.5", domain="voip.example.cn",
    username="02150001234", password="provider-secret", options_interval=0,
    dialled_from=DialledFrom.TO, caller_id="02150001234", codecs=[Codec.G729, Codec.PCMA],
)  # fmt: skip


def invite(
    *headers: str, uri: str = "sip:4008001234@192.0.2.1", to: str = "<sip:4008001234@192.0.2.1>"
) -> Request:
    text = (
        f"INVITE {uri} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKtrunk1\r\n"
        'Max-Forwards: 70\r\nFrom: "Gateway" <sip:013812345678@192.0.2.10>;tag=f1\r\n'
        f"To: {to}\r\nCall-ID: trunk-call-1\r\nCSeq: 1 INVITE\r\n"
        + "".join(h + "\r\n" for h in headers)
        + "Content-Length: 0\r\n\r\n"
    )
    request = parse_message(text.encode())
    assert isinstance(request, Request)
    return request


@pytest.mark.parametrize(
    ("dialled", "normal"),
    [
        ("013812345678", "+8613812345678"),
        ("13812345678", "+8613812345678"),
        ("+86 138-1234-5678", "+8613812345678"),
        ("008613812345678", "+8613812345678"),
        ("01088886666", "+861088886666"),
        ("4008001234", "4008001234"),
        ("8008101234", "8008101234"),
        ("+864008001234", "4008001234"),
        ("95588", "95588"),
        ("955881", "955881"),
        ("10086", "10086"),
        ("8001", "8001"),
        ("anonymous", "anonymous"),
        ("+14155550100", "+14155550100"),
    ],
)
def test_numbers_are_normalised_to_e164_except_service_and_short_numbers(
    dialled: str, normal: str
) -> None:
    assert normalise_number(dialled) == normal


def test_caller_id_comes_from_p_asserted_identity_before_rpid_and_from() -> None:
    request = invite(
        'P-Asserted-Identity: "Li Na" <sip:+8613900001111@192.0.2.10>, <tel:+8613900001111>',
        "Remote-Party-ID: <sip:13700002222@192.0.2.10>;party=calling",
    )
    assert caller_id(request) == CallerId("+8613900001111", "Li Na", False, "P-Asserted-Identity")


def test_caller_id_comes_from_remote_party_id_when_there_is_no_pai() -> None:
    request = invite(
        "Remote-Party-ID: <sip:13700003333@192.0.2.10>;party=called",
        'Remote-Party-ID: "Wang" <sip:13700002222@192.0.2.10>;party=calling;screen=yes',
    )
    assert caller_id(request) == CallerId("+8613700002222", "Wang", False, "Remote-Party-ID")


def test_caller_id_falls_back_to_from() -> None:
    assert caller_id(invite()) == CallerId("+8613812345678", "Gateway", False, "From")


@pytest.mark.parametrize(
    "privacy",
    [
        ("Privacy: id", "P-Asserted-Identity: <sip:13900001111@192.0.2.10>"),
        ("Privacy: user;critical", "P-Asserted-Identity: <sip:13900001111@192.0.2.10>"),
        ("Remote-Party-ID: <sip:13900001111@192.0.2.10>;party=calling;privacy=full",),
    ],
)
def test_privacy_keeps_the_number_for_records_but_presents_anonymous(
    privacy: tuple[str, ...],
) -> None:
    caller = caller_id(invite(*privacy))
    assert caller.number == "+8613900001111"
    assert caller.restricted
    assert caller.presentation == "anonymous"


def test_anonymous_from_without_identity_is_restricted_and_has_no_number() -> None:
    request = invite()
    request.headers.set("From", '"Anonymous" <sip:anonymous@anonymous.invalid>;tag=a1')
    assert caller_id(request) == CallerId("", "", True, "From")


def test_rpid_name_privacy_hides_only_the_name() -> None:
    caller = caller_id(invite('Remote-Party-ID: "Wang" <sip:13700002222@x.cn>;privacy=name'))
    assert (caller.number, caller.name, caller.restricted) == ("+8613700002222", "", False)


def test_dialled_number_comes_from_the_request_uri_or_to_per_trunk() -> None:
    request = invite(uri="sip:02150001234@192.0.2.1", to="<sip:+86-10-8888-6666@voip.example.cn>")
    trunks = Trunks()
    trunks.configure([GATEWAY, PROVIDER])
    from_gateway = trunks.inbound_call(request, "192.0.2.10")
    from_provider = trunks.inbound_call(request, "203.0.113.5")
    assert from_gateway is not None
    assert from_provider is not None
    assert from_gateway.dialled == "+862150001234"
    assert from_provider.dialled == "+861088886666"


def test_trunk_is_matched_by_allow_network_or_host_address() -> None:
    trunks = Trunks()
    trunks.configure([GATEWAY, PROVIDER])
    assert trunks.match("198.51.100.77", invite()) == GATEWAY
    assert trunks.match("192.0.2.10", invite()) == GATEWAY
    assert trunks.match("203.0.113.5", invite()) == PROVIDER
    assert trunks.match("192.0.2.99", invite()) is None
    assert trunks.match("not-an-address", invite()) is None


def test_two_trunks_on_one_address_are_told_apart_by_the_contact_user() -> None:
    second = Trunk(
        name="provider-2", mode=TrunkMode.REGISTER, host="203.0.113.5",
        username="02150009999", password="other-secret", options_interval=0,
    )  # fmt: skip
    trunks = Trunks()
    trunks.configure([PROVIDER, second])
    assert trunks.match("203.0.113.5", invite(uri="sip:02150009999@192.0.2.1")) == second
    assert trunks.match("203.0.113.5", invite(uri="sip:02150001234@192.0.2.1")) == PROVIDER


def test_inbound_call_names_trunk_caller_and_dialled_number_and_counts_it() -> None:
    trunks = Trunks()
    trunks.configure([GATEWAY])
    call = trunks.inbound_call(invite(), "198.51.100.77")
    assert call is not None
    assert (call.trunk, call.dialled, call.call_id) == ("gateway", "4008001234", "trunk-call-1")
    assert call.caller.number == "+8613812345678"
    assert trunks.status()[0]["calls_in"] == 1
    assert trunks.inbound_call(invite(), "192.0.2.99") is None


def test_without_trunks_there_is_no_outbound_route() -> None:
    with pytest.raises(NoRoute, match="no trunk is configured"):
        Trunks().route()
    trunks = Trunks()
    trunks.configure([GATEWAY])
    with pytest.raises(NoRoute, match="no trunk named 'nowhere'"):
        trunks.route("nowhere")
    assert trunks.route() == GATEWAY


def test_an_unregistered_trunk_is_no_route_until_it_registers() -> None:
    trunks = Trunks()
    trunks.configure([PROVIDER])
    with pytest.raises(NoRoute, match="unregistered or down"):
        trunks.route()
    assert trunks.route("provider") == PROVIDER


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
@pytest.mark.parametrize(
    ("status", "header"), [(401, "WWW-Authenticate"), (407, "Proxy-Authenticate")]
)
def test_a_trunks_challenge_is_answered_with_credentials_the_challenger_accepts(
    algorithm: str, status: int, header: str
) -> None:
    challenger = DigestChallenger(
        "voip.example.cn", {"02150001234": "provider-secret"}.get, algorithms=(algorithm,)
    )
    trunks = Trunks()
    trunks.configure([PROVIDER])
    request = invite()
    refusal = request.response(status, "Challenge")
    refusal.headers.add(header, challenger.challenges()[0])
    answered = trunks.authorize("provider", request, refusal)
    assert answered is not None
    # RFC 3261 22.2: a new transaction of the same call: CSeq up by one, a new branch.
    assert (answered.call_id, answered.cseq.number) == (request.call_id, 2)
    assert answered.top_via.branch != request.top_via.branch
    credentials = "Authorization" if status == 401 else "Proxy-Authorization"
    assert challenger.verify(answered, credentials).verdict is Verdict.OK


def test_kept_credentials_answer_again_with_the_next_nonce_count() -> None:
    challenger = DigestChallenger("voip.example.cn", {"u": "secret"}.get, algorithms=("MD5",))
    refusal = invite().response(401, "Unauthorized")
    refusal.headers.add("WWW-Authenticate", challenger.challenges()[0])
    credentials = ClientCredentials("u", "secret")
    assert credentials.take(invite(), refusal)
    first, second = credentials.apply(invite()), credentials.apply(invite())
    assert "nc=00000001" in (first.headers.get("Authorization") or "")
    assert challenger.verify(first).verdict is Verdict.OK
    assert challenger.verify(second).verdict is Verdict.OK  # nc 2: not a replay


def test_a_second_challenge_for_the_nonce_already_answered_means_wrong_password() -> None:
    challenger = DigestChallenger("voip.example.cn", {"u": "right"}.get, algorithms=("MD5",))
    challenge = challenger.challenges()[0]
    refusal = invite().response(401, "Unauthorized")
    refusal.headers.add("WWW-Authenticate", challenge)
    credentials = ClientCredentials("u", "wrong")
    assert credentials.take(invite(), refusal)
    answered = credentials.apply(invite())
    assert not credentials.take(answered, refusal)
    stale = invite().response(401, "Unauthorized")
    stale.headers.add("WWW-Authenticate", challenge + ", stale=true")
    assert credentials.take(answered, stale)


def test_the_first_supported_challenge_of_a_realm_is_the_one_answered() -> None:
    refusal = invite().response(401, "Unauthorized")
    refusal.headers.add("WWW-Authenticate", 'Digest realm="r", nonce="a", algorithm=SHA-512-256')
    refusal.headers.add("WWW-Authenticate", 'Digest realm="r", nonce="b", algorithm=SHA-256')
    refusal.headers.add("WWW-Authenticate", 'Digest realm="r", nonce="c", algorithm=MD5')
    credentials = ClientCredentials("u", "p")
    assert credentials.take(invite(), refusal)
    (value,) = credentials.apply(invite()).headers.lines("Authorization")
    assert 'nonce="b"' in value
    assert "algorithm=SHA-256" in value


def test_challenges_without_credentials_or_digest_are_not_answered() -> None:
    refusal = invite().response(401, "Unauthorized")
    refusal.headers.add("WWW-Authenticate", 'Basic realm="x"')
    assert not ClientCredentials("u", "p").take(invite(), refusal)
    refusal.headers.add("WWW-Authenticate", 'Digest realm="x", nonce="n"')
    assert not ClientCredentials("", "").take(invite(), refusal)
    for incomplete in (
        'Digest nonce="n"',
        'Digest realm="x"',
        'Digest realm="x", nonce="n", qop="auth-int"',
    ):
        refusal.headers.set("WWW-Authenticate", incomplete)
        assert not ClientCredentials("u", "p").take(invite(), refusal), incomplete


@pytest.mark.parametrize(
    ("yaml", "message"),
    [
        ("region: XX", "trunks[0].region: is not a region libphonenumber knows: 'XX'"),
        ("dialled_from: from", "trunks[0].dialled_from: must be one of 'request_uri', 'to'"),
        ("options_interval: -1", "trunks[0].options_interval: must be between 0 and 3600"),
        ("register_expires: 30", "trunks[0].register_expires: must be between 60 and 86400"),
        ("caller_id: abc", "trunks[0].caller_id: must be a phone number"),
        ('password: "a\\tb"', "trunks[0].password: must be printable text"),
    ],
)
def test_bad_trunk_settings_name_the_key(yaml: str, message: str) -> None:
    document = (
        "trunks:\n  - name: gw\n    mode: ip\n    host: 192.0.2.10\n"
        f"    allow: [192.0.2.10]\n    {yaml}\n"
    )
    with pytest.raises(ConfigError) as error:
        load_document(document, "trunks.yaml")
    assert message in str(error.value)


@pytest.fixture
async def stack_with_trunks() -> AsyncIterator[tuple[SipStack, Trunks]]:
    trunks = Trunks()
    stack = SipStack(trunks=trunks)
    await stack.start("127.0.0.1", 0)
    yield stack, trunks
    await stack.close()


async def test_outbound_invite_names_the_number_at_the_trunk_with_caller_id_and_its_codecs(
    stack_with_trunks: tuple[SipStack, Trunks],
) -> None:
    stack, trunks = stack_with_trunks
    udp_gateway = Trunk(
        name="provider", mode=TrunkMode.IP, host="127.0.0.1", port=5090, transport=Transport.UDP,
        allow=["127.0.0.1"], caller_id="02150001234", codecs=[Codec.G729, Codec.PCMA],
        options_interval=0,
    )  # fmt: skip
    trunks.configure([udp_gateway])
    with pytest.raises(TrunkError, match="the dialled number must be digits"):
        await trunks.outbound_invite("1000@evil.example", ("127.0.0.1", 30000))
    outbound = await trunks.outbound_invite("013812345678", ("127.0.0.1", 30000))
    request = outbound.request
    assert str(request.uri) == "sip:013812345678@127.0.0.1:5090"
    assert request.from_.uri.user == "02150001234"
    assert request.from_.tag
    assert request.headers.get("P-Asserted-Identity") == "<sip:02150001234@127.0.0.1>"
    assert stack.transport is not None
    contact = request.headers.get("Contact")
    assert contact == f"<sip:02150001234@127.0.0.1:{stack.transport.udp_address[1]}>"
    offer = parse_sdp(request.body)
    assert [c.name for c in offer.media[0].codecs] == ["G729", "PCMA", "telephone-event"]
    assert outbound.flow.remote == ("127.0.0.1", 5090)
    again = parse_message(request.to_bytes())
    assert isinstance(again, Request)
    challenge = DigestChallenger("p", {"u": "s"}.get, algorithms=("MD5",)).challenges()[0]
    refusal: Response = request.response(407, "Proxy Authentication Required")
    refusal.headers.add("Proxy-Authenticate", challenge)
    assert trunks.authorize("provider", request, refusal) is None  # no credentials configured


async def final_response(sock: socket.socket, data: bytes, target: tuple[str, int]) -> Response:
    """Send ``data`` and read responses until the final one."""
    sock.sendto(data, target)
    while True:
        reply = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 65535), 10)
        response = parse_message(reply)
        assert isinstance(response, Response)
        if response.status >= 200:
            return response


async def test_only_trunks_and_registered_phones_may_send_requests_other_than_options() -> None:
    guard = SourceGuard(SecuritySettings(slow_after=100, ban_after=2))
    phone = Extension(number="1001", password="phone-1001-secret")
    trunks = Trunks()
    stack = SipStack(
        registrar=Registrar("callbox", {"1001": phone}.get), guard=guard, trunks=trunks
    )
    await stack.start("127.0.0.1", 0)
    trunks.configure(
        [
            Trunk(
                name="gw",
                mode=TrunkMode.IP,
                host="127.0.0.1",
                allow=["127.0.0.1/32"],
                options_interval=0,
            )
        ]
    )
    assert stack.transport is not None
    target = stack.transport.udp_address
    made = []
    for host in ("127.0.0.1", "127.0.0.2", "127.0.0.3"):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((host, 0))
        sock.setblocking(False)
        made.append(sock)
    gateway, desk_phone, stranger = made
    try:
        assert (await final_response(gateway, request("INVITE", gateway, 1), target)).status == 480
        assert trunks.status()[0]["calls_in"] == 1
        # The phone registers (401, then its credentials), then may call.
        challenge = await final_response(desk_phone, request("REGISTER", desk_phone, 1), target)
        credentials = authorization(
            challenge.headers.values("WWW-Authenticate")[0], method="REGISTER",
            uri="sip:1001@callbox", username="1001", password="phone-1001-secret",
        )  # fmt: skip
        registered = request("REGISTER", desk_phone, 2, f"Authorization: {credentials}")
        assert (await final_response(desk_phone, registered, target)).status == 200
        assert (
            await final_response(desk_phone, request("INVITE", desk_phone, 3), target)
        ).status == 480
        # A stranger may ask OPTIONS; its INVITE and MESSAGE are refused and count as failures.
        assert (
            await final_response(stranger, request("OPTIONS", stranger, 1), target)
        ).status == 200
        for cseq, method in enumerate(("INVITE", "MESSAGE"), 2):
            refused = await final_response(stranger, request(method, stranger, cseq), target)
            assert (refused.status, refused.reason) == (403, "Forbidden")
        assert list(guard.bans()) == ["127.0.0.3"]
        assert trunks.status()[0]["calls_in"] == 1
    finally:
        for sock in made:
            sock.close()
        await stack.close()


HEADER_TEXT = st.text(
    st.characters(blacklist_characters="\r\n\x00", blacklist_categories=["Cs"]), max_size=80
)


@settings(max_examples=300, deadline=None)
@given(pai=HEADER_TEXT, rpid=HEADER_TEXT, privacy=HEADER_TEXT)
def test_caller_id_never_fails_on_whatever_identity_headers_a_peer_sends(
    pai: str, rpid: str, privacy: str
) -> None:
    request = invite()
    for name, value in (
        ("P-Asserted-Identity", pai),
        ("Remote-Party-ID", rpid),
        ("Privacy", privacy),
    ):
        request.headers.add(name, value)
    caller = caller_id(request)
    assert isinstance(caller.number, str)


@settings(max_examples=300, deadline=None)
@given(text=HEADER_TEXT, region=st.sampled_from(["CN", "HK", "US", "GB"]))
def test_number_normalisation_never_fails(text: str, region: str) -> None:
    assert isinstance(normalise_number(text, region), str)


TOKEN = st.text(st.sampled_from('abcMD5SHA-256auth-int,"= \\'), max_size=12)
DIGEST = st.builds(
    lambda realm, nonce, algorithm, qop, extra: (
        f'realm="{realm}", nonce={nonce}, algorithm={algorithm}, qop="{qop}"{extra}'
    ),
    TOKEN, TOKEN, st.sampled_from(["MD5", "SHA-256", "md5", "SHA-512-256", "x"]), TOKEN, TOKEN,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(challenge=HEADER_TEXT, digest=st.one_of(HEADER_TEXT, DIGEST))
def test_any_challenge_a_peer_sends_is_answered_or_declined_never_an_error(
    challenge: str, digest: str
) -> None:
    refusal = invite().response(407, "Proxy Authentication Required")
    refusal.headers.add("Proxy-Authenticate", challenge)
    refusal.headers.add("Proxy-Authenticate", "Digest " + digest)
    credentials = ClientCredentials("u", "p")
    if credentials.take(invite(), refusal):
        assert credentials.apply(invite()).headers.get("Proxy-Authorization")


def test_status_shows_each_trunks_registration_options_calls_and_last_change() -> None:
    trunks = Trunks(now=lambda: 1_800_000_000.0)
    carrier = Trunk(
        name="carrier", mode=TrunkMode.REGISTER, host="203.0.113.5", username="u", password="p",
        options_interval=30,
    )  # fmt: skip
    trunks.configure([carrier])
    state = trunks.states["carrier"]
    state.registration, state.registration_reason = RegistrationState.FAILED, "403 Forbidden"
    state.failures, state.retry_at = 2, 1_800_000_042.0
    state.reachability = Reachability.UP
    state.last_change, state.last_change_reason = (
        1_800_000_000.0,
        "registration failed: 403 Forbidden",
    )
    status = {
        "uptime_s": 1, "version": "0", "pid": 1, "data_dir": "/d", "listeners": {},
        "media_core": {"implementation": "c++", "libraries": {}, "workers": 1, "rtp_ports": "1-2"},
        "store": {"records": {}}, "registrations": [], "banned": {}, "calls": [], "agents": [],
        "queues": [], "trunks": trunks.status(),
    }  # fmt: skip
    (line,) = [line for line in format_status(status).splitlines() if line.startswith("trunk")]
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(1_800_000_000.0))
    assert line == (
        "trunk         carrier (register, udp 203.0.113.5:5060): registration failed, "
        "retry in 42 s (403 Forbidden); OPTIONS up (every 30 s); 0 calls in, 0 out; "
        f"last change {when}: registration failed: 403 Forbidden"
    )


def test_configure_keeps_unchanged_trunks_and_replaces_changed_ones() -> None:
    trunks = Trunks()
    trunks.configure([GATEWAY, PROVIDER])
    gateway_state = trunks.states["gateway"]
    gateway_state.calls_in = 3
    moved = Trunk(
        name="provider", mode=TrunkMode.REGISTER, host="203.0.113.6", username="u", password="p"
    )
    trunks.configure([moved, GATEWAY])
    assert list(trunks.states) == ["provider", "gateway"]
    assert trunks.states["gateway"] is gateway_state
    assert trunks.states["provider"].trunk == moved
    trunks.configure([])
    assert trunks.states == {}
