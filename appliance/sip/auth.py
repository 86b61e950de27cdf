"""SIP digest authentication (RFC 3261 22, RFC 7616, RFC 8760): MD5 and SHA-256.

The switch's side is ``DigestChallenger``: it issues challenges (SHA-256
first, then MD5 for older phones, as RFC 8760 2.4 orders them) with
stateless nonces (a timestamp signed with HMAC), and verifies credentials
with ``qop=auth``. A nonce past its lifetime but correctly signed is
*stale*: the caller knew the password, so it is challenged again with
``stale=true`` and retries without asking its user (RFC 7616 3.3). Nonce
counts must grow, so a captured Authorization cannot be replayed.

The client's side, for trunks that challenge the switch, is
``authorization`` (one answer) and ``ClientCredentials`` (which challenges
to answer, nonce counts, wrong-password detection).
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import secrets
import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from appliance.sip.message import (
    Request,
    Response,
    SipParseError,
    parse_uri,
    quote,
    split_list,
    unquote,
)

ALGORITHMS = {
    "MD5": hashlib.md5,
    "MD5-sess": hashlib.md5,
    "SHA-256": hashlib.sha256,
    "SHA-256-sess": hashlib.sha256,
}
_CANONICAL_ALGORITHM = {name.lower(): name for name in ALGORITHMS}


class AuthError(ValueError):
    """A challenge or credentials header that cannot be read or used."""


def parse_auth(value: str) -> tuple[str, dict[str, str]]:
    """Split ``Digest realm="x", nonce="y", ...`` into the scheme and its parameters.

    Parameter names are lower-cased; quoted values are unquoted.
    """
    scheme, _, rest = value.strip(" \t").partition(" ")
    if not scheme:
        raise AuthError("empty authentication header")
    params: dict[str, str] = {}
    for item in split_list(rest):
        if not item:
            continue
        name, eq, raw = item.partition("=")
        if not eq:
            raise AuthError(f"bad parameter {item!r}")
        params[name.strip(" \t").lower()] = unquote(raw.strip(" \t"))
    return scheme, params


def _hash(algorithm: str, text: str) -> str:
    return ALGORITHMS[algorithm](text.encode("utf-8", "surrogateescape")).hexdigest()


def digest_response(
    *,
    algorithm: str,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None = None,
    nc: str = "",
    cnonce: str = "",
) -> str:
    """The ``response`` value (RFC 7616 3.4.1; without qop, RFC 2069's form)."""
    if algorithm not in ALGORITHMS:
        raise AuthError(f"unsupported algorithm {algorithm}")
    ha1 = _hash(algorithm, f"{username}:{realm}:{password}")
    if algorithm.endswith("-sess"):
        ha1 = _hash(algorithm, f"{ha1}:{nonce}:{cnonce}")
    ha2 = _hash(algorithm, f"{method}:{uri}")
    if qop is None:
        return _hash(algorithm, f"{ha1}:{nonce}:{ha2}")
    if qop != "auth":
        raise AuthError(f"unsupported qop {qop}")
    return _hash(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


def authorization(
    challenge: str,
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    nc: int = 1,
    cnonce: str | None = None,
) -> str:
    """An Authorization (or Proxy-Authorization) value answering ``challenge``."""
    scheme, params = parse_auth(challenge)
    if scheme.lower() != "digest":
        raise AuthError(f"unsupported scheme {scheme}")
    try:
        realm, nonce = params["realm"], params["nonce"]
    except KeyError as missing:
        raise AuthError(f"challenge without {missing.args[0]}") from None
    algorithm = _CANONICAL_ALGORITHM.get(params.get("algorithm", "MD5").lower())
    if algorithm is None:
        raise AuthError(f"unsupported algorithm {params['algorithm']}")
    offered_qop = [q.strip(" \t") for q in params.get("qop", "").split(",") if q.strip(" \t")]
    if offered_qop and "auth" not in offered_qop:
        raise AuthError(f"unsupported qop {params['qop']}")
    qop = "auth" if offered_qop else None
    cnonce = cnonce or secrets.token_hex(8)
    nc_text = f"{nc:08x}"
    response = digest_response(
        algorithm=algorithm,
        username=username,
        realm=realm,
        password=password,
        method=method,
        uri=uri,
        nonce=nonce,
        qop=qop,
        nc=nc_text,
        cnonce=cnonce,
    )
    fields = [
        f"username={quote(username)}",
        f"realm={quote(realm)}",
        f"nonce={quote(nonce)}",
        f"uri={quote(uri)}",
        f"response={quote(response)}",
        f"algorithm={algorithm}",
    ]
    if qop is not None:
        fields += [f"cnonce={quote(cnonce)}", f"qop={qop}", f"nc={nc_text}"]
    if "opaque" in params:
        fields.append(f"opaque={quote(params['opaque'])}")
    return "Digest " + ", ".join(fields)


CREDENTIALS_FOR = {"WWW-Authenticate": "Authorization", "Proxy-Authenticate": "Proxy-Authorization"}
"""Each challenge header (401, 407) and the header that answers it (RFC 3261 22.2, 22.3)."""


class ClientCredentials:
    """A username and password answering a server's 401 and 407 challenges.

    ``take`` reads a challenging response and keeps the challenges to
    answer; ``apply`` puts credentials for them on a request. They stay
    kept, so later requests (a registration's refreshes) carry credentials
    at once, each with the next nonce count, instead of costing a round
    trip each.
    """

    def __init__(self, username: str, password: str) -> None:
        self.username = username
        self.password = password
        self._challenges: list[tuple[str, str]] = []
        self._counts: OrderedDict[str, int] = OrderedDict()

    @property
    def challenged(self) -> bool:
        """True once a challenge has been taken."""
        return bool(self._challenges)

    def take(self, request: Request, response: Response) -> bool:
        """Keep ``response``'s challenges to ``request``; False when they cannot be answered.

        They cannot be without a username, with only unsupported schemes or
        algorithms, or when a challenge repeats a nonce that ``request``
        already answered and is not ``stale=true``: the password is wrong.
        """
        if not self.username:
            return False
        answered = {
            _nonce(v) for name in CREDENTIALS_FOR.values() for v in request.headers.lines(name)
        }
        challenges: list[tuple[str, str]] = []
        for challenge_header, credentials_header in CREDENTIALS_FOR.items():
            realms: set[str] = set()
            for value in response.headers.lines(challenge_header):
                try:
                    scheme, params = parse_auth(value)
                except AuthError:
                    continue
                if scheme.lower() != "digest" or not _answerable(params):
                    continue
                if params.get("nonce") in answered and params.get("stale", "").lower() != "true":
                    return False
                realm = params.get("realm", "")
                # RFC 8760 2.4: the first challenge we support in each realm is the one to answer.
                if realm not in realms:
                    realms.add(realm)
                    challenges.append((credentials_header, value))
        if not challenges:
            return False
        self._challenges = challenges
        return True

    def apply(self, request: Request) -> Request:
        """Put credentials for the kept challenges on ``request`` (in place, replacing any)."""
        for name in CREDENTIALS_FOR.values():
            request.headers.remove(name)
        for name, challenge in self._challenges:
            nonce = _nonce(challenge)
            count = self._counts.pop(nonce, 0) + 1
            self._counts[nonce] = count
            while len(self._counts) > 64:
                self._counts.popitem(last=False)
            value = authorization(
                challenge,
                method=request.method,
                uri=str(request.uri),
                username=self.username,
                password=self.password,
                nc=count,
            )
            request.headers.add(name, value)
        return request


def _nonce(value: str) -> str:
    try:
        return parse_auth(value)[1].get("nonce", "")
    except AuthError:
        return ""


def _answerable(params: dict[str, str]) -> bool:
    algorithm = _CANONICAL_ALGORITHM.get(params.get("algorithm", "MD5").lower())
    qop = [q.strip(" \t") for q in params.get("qop", "").split(",") if q.strip(" \t")]
    complete = "realm" in params and "nonce" in params
    return complete and algorithm is not None and (not qop or "auth" in qop)


class Verdict(enum.Enum):
    """What ``DigestChallenger.verify`` concluded."""

    OK = "ok"
    MISSING = "missing"
    """No credentials for this realm: challenge."""
    STALE = "stale"
    """Right password, old nonce: challenge again with stale=true."""
    INVALID = "invalid"
    """Wrong password, forged or replayed nonce, or malformed: challenge (or 403)."""


@dataclass(frozen=True)
class Verification:
    """The verdict and, when credentials were present, whose they were."""

    verdict: Verdict
    username: str | None = None
    reason: str = ""


class DigestChallenger:
    """Issues challenges and verifies credentials for one realm.

    ``lookup(username)`` returns the user's password, or None if unknown.
    ``clock`` returns seconds since the epoch (tests pass their own).
    """

    def __init__(
        self,
        realm: str,
        lookup: Callable[[str], str | None],
        *,
        nonce_lifetime: float = 300.0,
        algorithms: tuple[str, ...] = ("SHA-256", "MD5"),
        clock: Callable[[], float] = time.time,
        secret: bytes | None = None,
    ) -> None:
        for algorithm in algorithms:
            if algorithm not in ALGORITHMS:
                raise ValueError(f"unsupported algorithm {algorithm}")
        self.realm = realm
        self.lookup = lookup
        self.nonce_lifetime = nonce_lifetime
        self.algorithms = algorithms
        self.clock = clock
        self._secret = secret or secrets.token_bytes(32)
        self._opaque = secrets.token_hex(8)
        # Highest nonce count seen per nonce, oldest first, bounded.
        self._counts: OrderedDict[str, int] = OrderedDict()

    def new_nonce(self) -> str:
        """A nonce: issue time and random bytes, signed so no state is kept."""
        payload = struct.pack(">d", self.clock()) + secrets.token_bytes(8)
        mac = hmac.new(self._secret, payload + self.realm.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(payload + mac[:16]).decode().rstrip("=")

    def _nonce_age(self, nonce: str) -> float | None:
        """Seconds since the nonce was issued; None if we did not issue it."""
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except ValueError:
            return None
        if len(raw) != 32:
            return None
        payload, mac = raw[:16], raw[16:]
        expected = hmac.new(self._secret, payload + self.realm.encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(mac, expected[:16]):
            return None
        (issued,) = struct.unpack(">d", payload[:8])
        return float(self.clock() - issued)

    def challenges(self, *, stale: bool = False) -> list[str]:
        """WWW-Authenticate (or Proxy-Authenticate) values, one per algorithm."""
        nonce = self.new_nonce()
        return [
            f"Digest realm={quote(self.realm)}, nonce={quote(nonce)}, "
            f'opaque={quote(self._opaque)}, algorithm={algorithm}, qop="auth"'
            + (", stale=true" if stale else "")
            for algorithm in self.algorithms
        ]

    def verify(
        self,
        request: Request,
        header: str = "Authorization",
        lookup: Callable[[str], str | None] | None = None,
    ) -> Verification:
        """Check ``request``'s credentials for this realm (RFC 3261 22.4).

        ``lookup`` replaces the challenger's own for this request (a caller
        that has already read the user's record passes it on).
        """
        for value in request.headers.lines(header):
            try:
                scheme, params = parse_auth(value)
            except AuthError:
                continue
            if scheme.lower() == "digest" and params.get("realm") == self.realm:
                return self._verify(request, params, lookup or self.lookup)
        return Verification(Verdict.MISSING)

    def _verify(
        self, request: Request, params: dict[str, str], lookup: Callable[[str], str | None]
    ) -> Verification:
        username = params.get("username")

        def invalid(reason: str) -> Verification:
            return Verification(Verdict.INVALID, username, reason)

        needed = ("username", "nonce", "uri", "response")
        if any(name not in params for name in needed) or username is None:
            return invalid("credentials lack username, nonce, uri or response")
        algorithm = _CANONICAL_ALGORITHM.get(params.get("algorithm", "MD5").lower())
        if algorithm is None or algorithm not in self.algorithms:
            return invalid("algorithm not offered")
        if not _same_uri(params["uri"], str(request.uri)):
            return invalid("digest uri does not match the Request-URI")
        qop = params.get("qop")
        if qop != "auth":
            # RFC 8760 and our challenges require qop=auth; RFC 2069 digests are refused.
            return invalid("qop=auth required")
        nc_text, cnonce = params.get("nc", ""), params.get("cnonce", "")
        if not cnonce or len(nc_text) != 8:
            return invalid("qop=auth needs cnonce and an 8-digit nc")
        try:
            nc = int(nc_text, 16)
        except ValueError:
            return invalid("nc is not hexadecimal")
        age = self._nonce_age(params["nonce"])
        if age is None or age < -60:
            return invalid("nonce not issued here")
        password = lookup(username)
        if password is None:
            return invalid("unknown user")
        expected = digest_response(
            algorithm=algorithm,
            username=username,
            realm=self.realm,
            password=password,
            method=request.method,
            uri=params["uri"],
            nonce=params["nonce"],
            qop=qop,
            nc=nc_text,
            cnonce=cnonce,
        )
        if not hmac.compare_digest(expected, params["response"].lower()):
            return invalid("wrong response")
        if age > self.nonce_lifetime:
            return Verification(Verdict.STALE, username, "nonce expired")
        if nc <= self._counts.get(params["nonce"], 0):
            return invalid("nonce count replayed")
        self._counts[params["nonce"]] = nc
        self._counts.move_to_end(params["nonce"])
        while len(self._counts) > 10_000:
            self._counts.popitem(last=False)
        return Verification(Verdict.OK, username)


def _same_uri(digest_uri: str, request_uri: str) -> bool:
    if digest_uri == request_uri:
        return True
    try:
        return parse_uri(digest_uri) == parse_uri(request_uri)
    except SipParseError:
        return False
