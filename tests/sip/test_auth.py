"""Digest authentication: RFC test vectors, challenge and verify, stale and replayed nonces."""

from __future__ import annotations

import pytest

from appliance.sip.auth import (
    AuthError,
    DigestChallenger,
    Verdict,
    authorization,
    digest_response,
    parse_auth,
)
from appliance.sip.message import Request, parse_message

MUFASA = {"username": "Mufasa", "method": "GET", "uri": "/dir/index.html", "qop": "auth"}


def test_rfc2617_md5_example() -> None:
    assert (
        digest_response(
            algorithm="MD5",
            realm="testrealm@host.com",
            password="Circle Of Life",
            nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
            nc="00000001",
            cnonce="0a4f113b",
            **MUFASA,
        )
        == "6629fae49393a05397450978507c4ef1"
    )


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_examples(algorithm: str, expected: str) -> None:
    assert (
        digest_response(
            algorithm=algorithm,
            realm="http-auth@example.org",
            password="Circle of Life",
            nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            nc="00000001",
            cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            **MUFASA,
        )
        == expected
    )


def register(*authorizations: str) -> Request:
    lines = "".join(f"Authorization: {value}\r\n" for value in authorizations)
    request = parse_message(
        (
            "REGISTER sip:callbox.example.com SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 192.0.2.7;branch=z9hG4bKreg1\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:1001@callbox.example.com>;tag=r1\r\n"
            "To: <sip:1001@callbox.example.com>\r\nCall-ID: reg1@192.0.2.7\r\n"
            f"CSeq: 1 REGISTER\r\n{lines}Content-Length: 0\r\n\r\n"
        ).encode()
    )
    assert isinstance(request, Request)
    return request


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def challenger(clock: Clock) -> DigestChallenger:
    return DigestChallenger("callbox.example.com", {"1001": "s3cret"}.get, clock=clock)


def answer(
    challenge: str,
    password: str = "s3cret",
    nc: int = 1,
    username: str = "1001",
    uri: str = "sip:callbox.example.com",
) -> str:
    return authorization(
        challenge, method="REGISTER", uri=uri, username=username, password=password, nc=nc
    )


def test_challenges_offer_sha256_before_md5(challenger: DigestChallenger) -> None:
    sha, md5 = challenger.challenges()
    assert parse_auth(sha)[1]["algorithm"] == "SHA-256"
    assert parse_auth(md5)[1]["algorithm"] == "MD5"
    assert parse_auth(sha)[1]["qop"] == "auth"


@pytest.mark.parametrize("which", [0, 1])
def test_right_password_is_accepted_with_either_algorithm(
    challenger: DigestChallenger, which: int
) -> None:
    challenge = challenger.challenges()[which]
    result = challenger.verify(register(answer(challenge)))
    assert (result.verdict, result.username) == (Verdict.OK, "1001")


def test_no_credentials_means_challenge(challenger: DigestChallenger) -> None:
    assert challenger.verify(register()).verdict is Verdict.MISSING


def test_wrong_password_is_invalid(challenger: DigestChallenger) -> None:
    result = challenger.verify(register(answer(challenger.challenges()[0], "guess")))
    assert (result.verdict, result.reason) == (Verdict.INVALID, "wrong response")


def test_old_nonce_with_right_password_is_stale(challenger: DigestChallenger, clock: Clock) -> None:
    challenge = challenger.challenges()[0]
    clock.now += 301
    assert challenger.verify(register(answer(challenge))).verdict is Verdict.STALE
    assert "stale=true" in challenger.challenges(stale=True)[0]


def test_old_nonce_with_wrong_password_is_invalid_not_stale(
    challenger: DigestChallenger, clock: Clock
) -> None:
    challenge = challenger.challenges()[0]
    clock.now += 301
    assert challenger.verify(register(answer(challenge, "guess"))).verdict is Verdict.INVALID


def test_replayed_nonce_count_is_refused_and_a_higher_one_accepted(
    challenger: DigestChallenger,
) -> None:
    challenge = challenger.challenges()[0]
    first = register(answer(challenge, nc=1))
    assert challenger.verify(first).verdict is Verdict.OK
    replay = challenger.verify(first)
    assert (replay.verdict, replay.reason) == (Verdict.INVALID, "nonce count replayed")
    assert challenger.verify(register(answer(challenge, nc=2))).verdict is Verdict.OK


def test_nonce_from_elsewhere_is_invalid(challenger: DigestChallenger, clock: Clock) -> None:
    other = DigestChallenger("callbox.example.com", {"1001": "s3cret"}.get, clock=clock)
    result = challenger.verify(register(answer(other.challenges()[0])))
    assert (result.verdict, result.reason) == (Verdict.INVALID, "nonce not issued here")


def test_digest_uri_must_match_the_request_uri(challenger: DigestChallenger) -> None:
    value = answer(challenger.challenges()[0], uri="sip:elsewhere.example.com")
    result = challenger.verify(register(value))
    assert result.reason == "digest uri does not match the Request-URI"


def test_credentials_for_another_realm_are_ignored(challenger: DigestChallenger) -> None:
    other = DigestChallenger("trunk.example.net", {"1001": "s3cret"}.get)
    assert challenger.verify(register(answer(other.challenges()[0]))).verdict is Verdict.MISSING


def test_unknown_user_is_invalid(challenger: DigestChallenger) -> None:
    value = answer(challenger.challenges()[0], "x", username="9999")
    assert challenger.verify(register(value)).reason == "unknown user"


def test_client_answers_a_trunk_challenge_without_qop_in_rfc2069_form() -> None:
    value = authorization(
        'Digest realm="trunk", nonce="abc", algorithm=MD5',
        method="INVITE",
        uri="sip:+861012345678@trunk.example.net",
        username="callbox",
        password="pw",
    )
    _, params = parse_auth(value)
    assert "qop" not in params
    assert params["response"] == digest_response(
        algorithm="MD5",
        username="callbox",
        realm="trunk",
        password="pw",
        method="INVITE",
        uri="sip:+861012345678@trunk.example.net",
        nonce="abc",
    )


def test_parse_auth_keeps_commas_inside_quotes() -> None:
    scheme, params = parse_auth('Digest realm="a, b", qop="auth,auth-int", nonce=xyz')
    assert scheme == "Digest"
    assert params == {"realm": "a, b", "qop": "auth,auth-int", "nonce": "xyz"}


@pytest.mark.parametrize(
    ("challenge", "problem"),
    [
        ('Basic realm="x"', "unsupported scheme"),
        ('Digest realm="x"', "challenge without nonce"),
        ('Digest realm="x", nonce="n", algorithm=SHA-512', "unsupported algorithm"),
        ('Digest realm="x", nonce="n", qop="auth-int"', "unsupported qop"),
    ],
)
def test_unusable_challenges_raise_auth_error(challenge: str, problem: str) -> None:
    with pytest.raises(AuthError, match=problem):
        authorization(challenge, method="INVITE", uri="sip:x", username="u", password="p")
