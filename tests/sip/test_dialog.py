"""Dialogs (RFC 3261 12): creation on both sides, routing, CSeq rules, hold, INFO; SIPp calls."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from appliance.sip.dialog import (
    Dialog,
    DialogError,
    Dialogs,
    DialogState,
    DtmfRelay,
    hold_requested,
    parse_dtmf_relay,
)
from appliance.sip.message import Request, Response, parse_message
from appliance.sip.sdp import create_answer, create_offer, parse_sdp
from appliance.sip.transaction import ClientTransaction, ServerTransaction, TransactionLayer
from appliance.sip.transport import SipTransport
from tests.sip.net import free_media_ports, free_port

SCENARIOS = Path(__file__).parent / "sipp"

INVITE = (
    "INVITE sip:4000@callbox.example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP pc.example.com;branch=z9hG4bKd1\r\n"
    "Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n"
    "Max-Forwards: 70\r\nFrom: Alice <sip:alice@example.com>;tag=a1\r\n"
    "To: <sip:4000@callbox.example.com>\r\nCall-ID: dlg1@pc.example.com\r\n"
    "CSeq: 10 INVITE\r\nContact: <sip:alice@192.0.2.5:5070>\r\nContent-Length: 0\r\n\r\n"
)


def parsed(text: str) -> Request | Response:
    return parse_message(text.encode())


def invite() -> Request:
    request = parsed(INVITE)
    assert isinstance(request, Request)
    return request


def ok(request: Request, contact: str = "<sip:callbox@192.0.2.1>") -> Response:
    response = request.response(200, "OK", to_tag="b2")
    response.headers.add("Contact", contact)
    return response


def test_uas_dialog_takes_route_set_in_order_and_the_callers_contact() -> None:
    request = invite()
    dialog = Dialog.as_uas(request, ok(request))
    assert dialog.id == ("dlg1@pc.example.com", "b2", "a1")
    assert dialog.state is DialogState.CONFIRMED
    assert dialog.route_set == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    assert str(dialog.remote_target) == "sip:alice@192.0.2.5:5070"
    assert dialog.remote_seq == 10


def test_uac_dialog_reverses_the_route_set_and_bye_goes_to_the_remote_target() -> None:
    request = invite()
    response = ok(request)
    # RFC 3261 12.1.1: the UAS copies Record-Route into its 2xx.
    response.headers.add("Record-Route", "<sip:p1.example.com;lr>, <sip:p2.example.com;lr>")
    dialog = Dialog.as_uac(request, response)
    assert dialog.route_set == ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
    bye = dialog.create_request("BYE", "SIP/2.0/UDP pc.example.com;branch=z9hG4bKbye")
    assert str(bye.uri) == "sip:callbox@192.0.2.1"
    assert bye.headers.values("Route") == dialog.route_set
    assert bye.cseq.number == 11
    assert (bye.from_.tag, bye.to.tag) == ("a1", "b2")
    assert bye.call_id == "dlg1@pc.example.com"


def test_strict_router_first_gets_the_request_uri_and_target_goes_last() -> None:
    request = invite()
    request.headers.set("Record-Route", "<sip:strict.example.com>")
    dialog = Dialog.as_uas(request, ok(request))
    bye = dialog.create_request("BYE", "SIP/2.0/UDP callbox;branch=z9hG4bKs")
    assert str(bye.uri) == "sip:strict.example.com"
    assert bye.headers.values("Route") == ["<sip:alice@192.0.2.5:5070>"]


def test_lower_cseq_is_refused_and_reinvite_refreshes_the_target() -> None:
    request = invite()
    dialog = Dialog.as_uas(request, ok(request))
    reinvite = parsed(
        INVITE.replace("To: <sip:4000@callbox.example.com>", "To: <sip:4000@x>;tag=b2")
        .replace("CSeq: 10", "CSeq: 11")
        .replace("192.0.2.5:5070", "192.0.2.9:5080")
    )
    assert isinstance(reinvite, Request)
    dialog.receive_request(reinvite)
    assert str(dialog.remote_target) == "sip:alice@192.0.2.9:5080"
    with pytest.raises(DialogError) as refused:
        dialog.receive_request(reinvite)
    assert refused.value.status == 500


def test_hold_is_sendonly_inactive_or_zero_address() -> None:
    offer = create_offer("192.0.2.5", 4000)
    assert not hold_requested(offer)
    assert hold_requested(create_offer("192.0.2.5", 4000, direction="sendonly"))
    assert hold_requested(create_offer("192.0.2.5", 4000, direction="inactive"))
    assert hold_requested(create_offer("0.0.0.0", 4000))


def test_dtmf_relay_body_is_read_and_garbage_refused() -> None:
    assert parse_dtmf_relay(b"Signal=5\r\nDuration=160\r\n") == DtmfRelay("5", 160)
    assert parse_dtmf_relay(b"signal= #\n") == DtmfRelay("#", 250)
    with pytest.raises(ValueError, match="not a DTMF key"):
        parse_dtmf_relay(b"Signal=55\r\n")


@dataclass
class DialogUas:
    """A UAS on the dialog layer: answers calls, follows hold and INFO, ends on BYE."""

    contact: str = ""
    dialogs: Dialogs = field(default_factory=Dialogs)
    held: list[bool] = field(default_factory=list)
    digits: list[str] = field(default_factory=list)
    acks: int = 0
    ended: list[Dialog] = field(default_factory=list)

    def request_received(self, request: Request, transaction: ServerTransaction | None) -> None:
        dialog = self.dialogs.find(request)
        if transaction is None:
            if dialog is not None and request.method == "ACK":
                dialog.receive_request(request)
                self.acks += 1
            return
        if request.method == "INVITE" and request.to.tag is None:
            response = self._answer(request)
            dialog = Dialog.as_uas(request, response)
            self.dialogs.add(dialog)
            transaction.respond(response)
            return
        if dialog is None:
            transaction.respond(request.response(481, "Call/Transaction Does Not Exist"))
            return
        try:
            dialog.receive_request(request)
        except DialogError as error:
            transaction.respond(request.response(error.status, error.reason))
            return
        if request.method == "INVITE":
            dialog.held = hold_requested(parse_sdp(request.body))
            self.held.append(dialog.held)
            transaction.respond(self._answer(request))
            return
        if request.method == "INFO":
            self.digits.append(parse_dtmf_relay(request.body).signal)
        if request.method == "BYE":
            self.dialogs.remove(dialog)
            self.ended.append(dialog)
        transaction.respond(request.response(200, "OK"))

    def _answer(self, request: Request) -> Response:
        answer = create_answer(parse_sdp(request.body), "127.0.0.1", 40000)
        response = request.response(200, "OK", to_tag=secrets.token_hex(4))
        response.headers.add("Contact", self.contact)
        response.headers.add("Content-Type", "application/sdp")
        response.body = answer.to_bytes()
        return response

    def response_received(self, response: Response, transaction: ClientTransaction | None) -> None:
        """This UAS sends no requests."""

    def transaction_timed_out(self, transaction: ClientTransaction) -> None:
        """This UAS sends no requests."""


@pytest.fixture
async def uas() -> AsyncIterator[tuple[DialogUas, int]]:
    user = DialogUas()
    transport = SipTransport(lambda m, f: layer.receive(m, f))
    layer = TransactionLayer(user, transport.send_response)
    await transport.start("127.0.0.1", 0)
    port = transport.udp_address[1]
    user.contact = f"<sip:callbox@127.0.0.1:{port}>"
    yield user, port
    layer.close()
    await transport.close()


@pytest.mark.slow
async def test_sipp_call_holds_resumes_sends_dtmf_and_hangs_up_in_one_dialog(
    uas: tuple[DialogUas, int], tmp_path: Path
) -> None:
    user, port = uas
    process = await asyncio.create_subprocess_exec(
        "sipp", f"127.0.0.1:{port}", "-sf", str(SCENARIOS / "dialog_hold_info_bye.xml"),
        "-s", "4000", "-m", "1", "-i", "127.0.0.1", "-p", str(free_port()),
        "-mp", str(free_media_ports()), "-nostdin", "-timeout", "30", "-timeout_error",
        "-trace_err",
        cwd=tmp_path, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, out.decode(errors="replace")[-2000:]
    assert user.held == [True, False]
    assert user.digits == ["5"]
    assert user.acks == 3
    (dialog,) = user.ended
    assert dialog.state is DialogState.TERMINATED
    assert dialog.remote_seq == 5
    assert user.dialogs.table == {}
