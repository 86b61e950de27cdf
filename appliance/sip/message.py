"""SIP messages (RFC 3261 sections 7, 18.3, 20 and 25): parse and serialise.

``parse_message`` turns the bytes of one message into a ``Request`` or a
``Response`` and raises only ``SipParseError`` on bad bytes. The parser is
strict where RFC 3261 and RFC 4475 ask an element to answer 400, so a message
that parses here is one the upper layers can trust: the Via, From, To,
Call-ID, CSeq, Max-Forwards and Content-Length fields are all well-formed.

Header values are kept as received (unfolded) and typed views (``Via``,
``Address``, ``CSeq``) are parsed from them on demand, so a proxied or
echoed header goes out byte for byte as it came in. Bytes outside UTF-8 (a
quoted NUL in a display name, binary in a body) survive a round trip: the
head is decoded with ``surrogateescape``.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Literal

MAX_MESSAGE_BYTES = 65_535
"""Largest message accepted on any transport (the largest UDP payload)."""

MAX_HEADER_FIELDS = 256
"""Most header field lines one message may carry."""

MAX_CSEQ = 2**31 - 1
"""RFC 3261 8.1.1.5: the CSeq sequence number is below 2**31."""

Transport = Literal["datagram", "stream"]

COMPACT_FORMS = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

_CANONICAL = {
    name.lower(): name
    for name in (
        *COMPACT_FORMS.values(),
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Alert-Info",
        "Allow",
        "Authentication-Info",
        "Authorization",
        "Call-Info",
        "Content-Disposition",
        "Content-Language",
        "CSeq",
        "Date",
        "Error-Info",
        "Expires",
        "In-Reply-To",
        "Max-Forwards",
        "MIME-Version",
        "Min-Expires",
        "Organization",
        "Priority",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Require",
        "Reason",
        "Record-Route",
        "Reply-To",
        "Require",
        "Retry-After",
        "Route",
        "Server",
        "Timestamp",
        "Unsupported",
        "User-Agent",
        "Warning",
        "WWW-Authenticate",
    )
}

# Header fields whose grammar is a comma-separated list (RFC 3261 7.3.1), so
# several lines and one line with commas mean the same. Authorization and its
# kin carry commas inside one value and are not here.
LIST_HEADERS = frozenset(
    {
        "Accept",
        "Accept-Contact",
        "Accept-Encoding",
        "Accept-Language",
        "Alert-Info",
        "Allow",
        "Allow-Events",
        "Call-Info",
        "Contact",
        "Content-Encoding",
        "Content-Language",
        "Error-Info",
        "In-Reply-To",
        "Proxy-Require",
        "Reason",
        "Record-Route",
        "Reject-Contact",
        "Require",
        "Route",
        "Supported",
        "Unsupported",
        "Via",
        "Warning",
    }
)

# Header fields that may appear once only; a second one makes the message
# ambiguous (RFC 4475 3.3.8 asks for 400).
SINGLE_HEADERS = ("Call-ID", "Content-Length", "Content-Type", "CSeq", "From", "Max-Forwards", "To")

MANDATORY_HEADERS = ("To", "From", "CSeq", "Call-ID", "Via")
"""RFC 3261 8.1.1: present in every request and response (Max-Forwards is
required of senders, but RFC 3261 16.3 lets a receiver treat it as absent)."""

_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_TOKEN_RE = re.compile(_TOKEN)
_WORD_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+")
_CALL_ID_RE = re.compile(rf"{_WORD_RE.pattern}(@{_WORD_RE.pattern})?")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
_VERSION_RE = re.compile(r"SIP/(\d+)\.(\d+)", re.IGNORECASE)
_REQUEST_LINE_RE = re.compile(rf"({_TOKEN}) ([^ ]+) ({_VERSION_RE.pattern})")
_STATUS_LINE_RE = re.compile(rf"({_VERSION_RE.pattern}) (\d{{3}}) (.*)", re.DOTALL)
_HOSTNAME_RE = re.compile(
    r"([A-Za-z0-9]([A-Za-z0-9\-]*[A-Za-z0-9])?\.)*[A-Za-z]([A-Za-z0-9\-]*[A-Za-z0-9])?\.?"
)
_IPV6_REFERENCE_RE = re.compile(r"\[[0-9A-Fa-f:.]+\]")
_BARE_IPV6_RE = re.compile(r"[0-9A-Fa-f]*:[0-9A-Fa-f:.]*")
_IPV4_RE = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}")
# RFC 3261 25.1: the characters allowed unescaped in each URI part.
_UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
_USER_RE = re.compile(rf"([{_UNRESERVED}&=+$,;?/]|%[0-9A-Fa-f]{{2}})+")
_PASSWORD_RE = re.compile(rf"([{_UNRESERVED}&=+$,]|%[0-9A-Fa-f]{{2}})*")
_PARAMCHAR_RE = re.compile(rf"([{_UNRESERVED}\[\]/:&+$]|%[0-9A-Fa-f]{{2}})+")
_HNV_RE = re.compile(rf"([{_UNRESERVED}\[\]/?:+$]|%[0-9A-Fa-f]{{2}})*")
_TEL_NUMBER_RE = re.compile(r"\+?[0-9A-Fa-f*#\-.()]+")
_OPAQUE_RE = re.compile(r"[^\x00-\x20\x7f<>\"]+")
_DATE_RE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} "
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT"
)
_ADDR_SPEC_RE = re.compile(r"[^;, \t]+")
_SENT_BY_RE = re.compile(r"(\[[^\]]*\]|[A-Za-z0-9\-.]+)(:\d+)?")
_DIGITS_RE = re.compile(r"[0-9]+")
_HEADER_NAME_RE = re.compile(rf"({_TOKEN})[ \t]*:")
# A via-parm without LWS inside and with token parameters (what phones send):
# name/version/transport SP sent-by *(;name[=value]).
_VIA_FAST_RE = re.compile(
    rf"({_TOKEN})/({_TOKEN})/({_TOKEN}) ((?:\[[^\]]*\]|[A-Za-z0-9\-.]+)(?::\d+)?)"
    rf"((?:;{_TOKEN}(?:={_TOKEN})?)*)"
)
_LIST_SPECIAL_RE = re.compile(r'[",<>\\]')
_QUOTED_PAIR_RE = re.compile(r"\\(.)", re.DOTALL)


class SipParseError(ValueError):
    """Bytes that are not a well-formed SIP message.

    ``reason`` names the problem and is what a 400 response carries as its
    Reason-Phrase; ``status`` is the response code the RFC asks for (400, or
    505 for an unknown SIP version). ``method`` and ``headers`` are what was
    read of a request before the problem, enough to build that response; a
    broken response (``method`` None) is simply dropped.
    """

    def __init__(
        self,
        reason: str,
        status: int = 400,
        *,
        method: str | None = None,
        headers: Headers | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.method = method
        self.headers = headers


@functools.lru_cache(maxsize=1024)
def canonical_name(name: str) -> str:
    """The long, conventionally capitalised form of a header field name."""
    lower = name.lower()
    long_name = COMPACT_FORMS.get(lower)
    if long_name is not None:
        return long_name
    return _CANONICAL.get(lower, name)


def split_list(value: str) -> list[str]:
    """Split a comma-separated header value, respecting quotes and <...>.

    Empty elements are kept (as "") so the caller can reject them.
    """
    if '"' not in value and "<" not in value:
        # Nothing can hide a comma: the common Via, Supported or Allow line.
        return [item.strip(" \t") for item in value.split(",")]
    items: list[str] = []
    start = pos = 0
    quoted = angled = False
    # Jump from one character that matters to the next (an Authorization
    # value is a few hundred characters, nearly all of them plain).
    while (found := _LIST_SPECIAL_RE.search(value, pos)) is not None:
        i = found.start()
        ch = value[i]
        pos = i + 1
        if quoted:
            if ch == "\\":
                pos = i + 2
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            angled = True
        elif ch == ">":
            angled = False
        elif ch == "," and not angled:
            items.append(value[start:i].strip(" \t"))
            start = i + 1
    items.append(value[start:].strip(" \t"))
    return items


class Headers:
    """The header fields of one message, in order, as (name, value) pairs.

    Names are stored in their canonical long form; values as received, with
    line folding replaced by a space. Lookups are case-insensitive and know
    compact forms.
    """

    def __init__(self, fields: Iterable[tuple[str, str]] = ()) -> None:
        self._fields: list[tuple[str, str]] = [
            (canonical_name(name), value) for name, value in fields
        ]
        # The lines of each name, built at the first lookup and dropped at each
        # change: a message's fields are looked up by name a dozen times or more
        # (parser checks, transport, transaction key, TU, the response's copy).
        # Tuples, not lists: the collector stops tracking a tuple of strings,
        # and answered messages stay alive for seconds.
        self._by_name: dict[str, tuple[str, ...]] | None = None

    def _index(self) -> dict[str, tuple[str, ...]]:
        index = self._by_name
        if index is None:
            grouped: dict[str, list[str]] = {}
            for name, value in self._fields:
                grouped.setdefault(name, []).append(value)
            index = {name: tuple(lines) for name, lines in grouped.items()}
            self._by_name = index
        return index

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._fields == other._fields

    def __repr__(self) -> str:
        return f"Headers({self._fields!r})"

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and canonical_name(name) in self._index()

    def get(self, name: str) -> str | None:
        """The value of the first field called ``name``, or None."""
        found = self._index().get(canonical_name(name))
        return found[0] if found else None

    def lines(self, name: str) -> list[str]:
        """Every field line called ``name``, unsplit."""
        return list(self._index().get(canonical_name(name), ()))

    def values(self, name: str) -> list[str]:
        """All values of ``name``: list headers split at their commas."""
        wanted = canonical_name(name)
        lines = self._index().get(wanted, ())
        if wanted not in LIST_HEADERS:
            return list(lines)
        return [item for line in lines for item in split_list(line)]

    def add(self, name: str, value: str) -> None:
        """Append a field."""
        wanted = canonical_name(name)
        self._fields.append((wanted, value))
        if self._by_name is not None:
            self._by_name[wanted] = (*self._by_name.get(wanted, ()), value)

    def set(self, name: str, value: str) -> None:
        """Replace every field called ``name`` by one (appended if absent)."""
        wanted = canonical_name(name)
        fields: list[tuple[str, str]] = []
        placed = False
        for field_ in self._fields:
            if field_[0] != wanted:
                fields.append(field_)
            elif not placed:
                fields.append((wanted, value))  # where the first one was
                placed = True
        if not placed:
            fields.append((wanted, value))
        self._fields = fields
        self._by_name = None

    def replace_first_value(self, name: str, value: str) -> None:
        """Replace the first value of ``name`` (the first element of a list header)."""
        wanted = canonical_name(name)
        for i, (have, line) in enumerate(self._fields):
            if have == wanted:
                items = split_list(line) if wanted in LIST_HEADERS else [line]
                self._fields[i] = (wanted, ", ".join([value, *items[1:]]))
                self._by_name = None
                return
        raise KeyError(name)

    def remove(self, name: str) -> None:
        """Drop every field called ``name``."""
        wanted = canonical_name(name)
        self._fields = [(n, v) for n, v in self._fields if n != wanted]
        self._by_name = None


Params = tuple[tuple[str, str | None], ...]


def _param_map(params: Params) -> dict[str, str]:
    """Parameters by lower-cased name, the first of each name ("" for a flag)."""
    by_name: dict[str, str] = {}
    for key, value in params:
        by_name.setdefault(key.lower(), "" if value is None else value)
    return by_name


def _format_params(params: Params) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params)


@dataclass(frozen=True)
class Uri:
    """A SIP, SIPS or tel URI (RFC 3261 19.1, RFC 3966), or any other scheme.

    Parts keep their %-escapes as written (``unescape`` decodes them), so a
    URI serialises back to the text it came from. For schemes other than
    sip, sips and tel only ``scheme`` and ``opaque`` are set.
    """

    scheme: str
    host: str = ""
    user: str | None = None
    password: str | None = None
    port: int | None = None
    params: Params = ()
    headers: tuple[tuple[str, str], ...] = ()
    opaque: str | None = None

    @functools.cached_property
    def _params_by_name(self) -> dict[str, str]:
        return _param_map(self.params)

    def param(self, name: str) -> str | None:
        """A URI parameter's value ("" for a flag such as ``lr``), or None."""
        return self._params_by_name.get(name.lower())

    def __str__(self) -> str:
        if self.opaque is not None:
            return f"{self.scheme}:{self.opaque}"
        if self.scheme == "tel":
            return f"tel:{self.user}{_format_params(self.params)}"
        userinfo = ""
        if self.user is not None:
            userinfo = self.user
            if self.password is not None:
                userinfo += f":{self.password}"
            userinfo += "@"
        port = f":{self.port}" if self.port is not None else ""
        headers = "&".join(f"{k}={v}" for k, v in self.headers)
        return f"{self.scheme}:{userinfo}{self.host}{port}{_format_params(self.params)}" + (
            f"?{headers}" if headers else ""
        )


def unescape(text: str) -> str:
    """Decode %HH escapes (RFC 3261 19.1.2), bytes taken as UTF-8."""
    if "%" not in text:
        return text
    raw = re.sub(
        r"%([0-9A-Fa-f]{2})",
        lambda m: chr(int(m.group(1), 16)),
        text,
    )
    return raw.encode("latin-1", "surrogateescape").decode("utf-8", "surrogateescape")


def _check_host(host: str, what: str) -> str:
    """Validate a host (hostname, IPv4, [IPv6] or bare IPv6); return it lower-cased."""
    if host.startswith("[") or ":" in host:
        if host.startswith("[") != host.endswith("]"):
            raise SipParseError(f"Bad {what}: unterminated IPv6 reference")
        try:
            ipaddress.IPv6Address(host.strip("[]"))
        except ValueError:
            raise SipParseError(f"Bad {what}: invalid IPv6 address {host}") from None
        return host.lower()
    if _IPV4_RE.fullmatch(host):
        # The regex has checked the shape; only the octet ranges are left.
        if any(int(octet) > 255 for octet in host.split(".")):
            raise SipParseError(f"Bad {what}: invalid IPv4 address {host}")
        return host
    if not _HOSTNAME_RE.fullmatch(host):
        raise SipParseError(f"Bad {what}: invalid host {host!r}")
    return host.lower()


def _split_hostport(text: str, what: str) -> tuple[str, int | None]:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipParseError(f"Bad {what}: unterminated IPv6 reference")
        host, rest = text[: end + 1], text[end + 1 :]
    else:
        host, sep, port_text = text.partition(":")
        rest = sep + port_text
    port: int | None = None
    if rest:
        if not rest.startswith(":") or not rest[1:].isdigit() or not rest[1:].isascii():
            raise SipParseError(f"Bad {what}: invalid port")
        port = int(rest[1:])
        if port > 65535:
            raise SipParseError(f"Bad {what}: port {port} out of range")
    return _check_host(host, what), port


def _uri_params(text: str, what: str) -> Params:
    params: list[tuple[str, str | None]] = []
    for item in text.split(";"):
        name, eq, value = item.partition("=")
        if not _PARAMCHAR_RE.fullmatch(name) or (eq and not _PARAMCHAR_RE.fullmatch(value)):
            raise SipParseError(f"Bad {what}: invalid URI parameter {item!r}")
        params.append((name, value if eq else None))
    return tuple(params)


# A phone's From differs between requests in its tag only: its URI is the same.
@functools.lru_cache(maxsize=1024)
def parse_uri(text: str, what: str = "URI") -> Uri:
    """Parse a URI; ``what`` names where it came from for the error reason."""
    scheme_match = _SCHEME_RE.match(text)
    if scheme_match is None or text[scheme_match.end() : scheme_match.end() + 1] != ":":
        raise SipParseError(f"Bad {what}: missing URI scheme")
    scheme = scheme_match.group().lower()
    rest = text[scheme_match.end() + 1 :]
    if scheme == "tel":
        number, semi, tel_params = rest.partition(";")
        if not _TEL_NUMBER_RE.fullmatch(number):
            raise SipParseError(f"Bad {what}: invalid telephone number")
        return Uri("tel", user=number, params=_uri_params(tel_params, what) if semi else ())
    if scheme not in ("sip", "sips"):
        if not _OPAQUE_RE.fullmatch(rest):
            raise SipParseError(f"Bad {what}: invalid {scheme} URI")
        return Uri(scheme, opaque=rest)
    # '@' is never allowed unescaped after the userinfo, so the first one ends it.
    user = password = None
    userinfo, at, hostpart = rest.partition("@")
    if not at:
        userinfo, hostpart = "", rest
    elif "@" in hostpart:
        raise SipParseError(f"Bad {what}: more than one '@'")
    else:
        user, colon, pw = userinfo.partition(":")
        if not _USER_RE.fullmatch(user):
            raise SipParseError(f"Bad {what}: invalid user part")
        if colon:
            if not _PASSWORD_RE.fullmatch(pw):
                raise SipParseError(f"Bad {what}: invalid password")
            password = pw
    hostpart, question, header_text = hostpart.partition("?")
    hostport, semi, param_text = hostpart.partition(";")
    host, port = _split_hostport(hostport, what)
    params = _uri_params(param_text, what) if semi else ()
    headers: list[tuple[str, str]] = []
    if question:
        for item in header_text.split("&"):
            name, eq, value = item.partition("=")
            if not eq or not _HNV_RE.fullmatch(name) or not name or not _HNV_RE.fullmatch(value):
                raise SipParseError(f"Bad {what}: invalid URI header {item!r}")
            headers.append((name, value))
    return Uri(scheme, host, user, password, port, params, tuple(headers))


class _Cursor:
    """Reads one header value left to right (RFC 3261 25.1 LWS rules)."""

    def __init__(self, text: str, what: str) -> None:
        self.text = text
        self.pos = 0
        self.what = what

    def error(self, problem: str) -> SipParseError:
        return SipParseError(f"Bad {self.what}: {problem}")

    def skip_lws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def peek(self) -> str:
        self.skip_lws()
        return self.text[self.pos : self.pos + 1]

    def at_end(self) -> bool:
        return self.peek() == ""

    def accept(self, ch: str) -> bool:
        if self.peek() == ch:
            self.pos += 1
            return True
        return False

    def expect(self, ch: str) -> None:
        if not self.accept(ch):
            found = self.peek() or "end of value"
            raise self.error(f"expected {ch!r}, found {found!r}")

    def match(self, pattern: re.Pattern[str], name: str) -> str:
        self.skip_lws()
        m = pattern.match(self.text, self.pos)
        if m is None or not m.group():
            raise self.error(f"expected {name}")
        self.pos = m.end()
        return m.group()

    def token(self) -> str:
        return self.match(_TOKEN_RE, "a token")

    def quoted_string(self) -> str:
        """A quoted-string, returned raw (with its quotes and escapes)."""
        self.skip_lws()
        start = self.pos
        if self.text[self.pos : self.pos + 1] != '"':
            raise self.error("expected a quoted string")
        self.pos += 1
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == "\\":
                if self.pos + 1 >= len(self.text) or self.text[self.pos + 1] in "\r\n":
                    raise self.error("bad escape in quoted string")
                self.pos += 2
                continue
            self.pos += 1
            if ch == '"':
                return self.text[start : self.pos]
            if (ch < " " and ch != "\t") or ch == "\x7f":
                raise self.error("control character in quoted string")
        raise self.error("unterminated quoted string")

    def params(self) -> Params:
        """``*( SEMI generic-param )``: token [ EQUAL ( token / host / quoted-string ) ]."""
        params: list[tuple[str, str | None]] = []
        while self.accept(";"):
            name = self.token()
            value: str | None = None
            if self.accept("="):
                nxt = self.peek()
                if nxt == '"':
                    value = self.quoted_string()
                elif nxt == "[":
                    value = self.match(_IPV6_REFERENCE_RE, "an IPv6 reference")
                elif bare := _BARE_IPV6_RE.match(self.text, self.pos):
                    # Via received= carries a bare IPv6 address (RFC 3261 20.42).
                    value = bare.group()
                    self.pos = bare.end()
                else:
                    value = self.token()
            params.append((name, value))
        return tuple(params)


def unquote(text: str) -> str:
    """The content of a raw quoted-string with quoted-pairs resolved."""
    if not (len(text) >= 2 and text[0] == '"' and text[-1] == '"'):
        return text
    inner = text[1:-1]
    if "\\" not in inner:
        return inner  # no quoted-pairs: the usual nonce, realm or display name
    return _QUOTED_PAIR_RE.sub(r"\1", inner)


def quote(text: str) -> str:
    """``text`` as a quoted-string; quotes, backslashes and controls become quoted-pairs.

    CR and LF cannot be carried in a quoted-string at all (RFC 3261 25.1).
    """
    if "\r" in text or "\n" in text:
        raise ValueError("a quoted-string cannot carry CR or LF")
    escaped = "".join(
        "\\" + ch if ch in '"\\' or (ch < " " and ch != "\t") or ch == "\x7f" else ch for ch in text
    )
    return f'"{escaped}"'


@dataclass(frozen=True)
class Address:
    """A name-addr or addr-spec with header parameters (From, To, Contact, Route).

    ``display_name`` is the decoded text (None when absent).
    """

    uri: Uri
    display_name: str | None = None
    params: Params = ()

    @functools.cached_property
    def _params_by_name(self) -> dict[str, str]:
        return _param_map(self.params)

    @property
    def tag(self) -> str | None:
        """The ``tag`` parameter (From and To)."""
        return self._params_by_name.get("tag")

    def param(self, name: str) -> str | None:
        """A header parameter's value ("" for a flag), or None."""
        return self._params_by_name.get(name.lower())

    def __str__(self) -> str:
        display = "" if self.display_name is None else quote(self.display_name) + " "
        return f"{display}<{self.uri}>{_format_params(self.params)}"


def _address(cur: _Cursor, *, name_addr_only: bool = False) -> Address:
    start = cur.pos
    display: str | None = None
    nxt = cur.peek()
    if nxt == '"':
        display = unquote(cur.quoted_string())
        if cur.peek() != "<":
            raise cur.error("display name not followed by <URI>")
    elif nxt != "<":
        tokens: list[str] = []
        while _TOKEN_RE.match(cur.text, cur.pos):
            tokens.append(cur.token())
            cur.skip_lws()
        if tokens and cur.peek() == "<":
            display = " ".join(tokens)
        else:
            cur.pos = start
    if cur.accept("<"):
        end = cur.text.find(">", cur.pos)
        if end < 0:
            raise cur.error("missing '>'")
        uri_text = cur.text[cur.pos : end]
        if uri_text != uri_text.strip(" \t") or not uri_text:
            raise cur.error("whitespace inside <URI>")
        uri = parse_uri(uri_text, cur.what)
        cur.pos = end + 1
    else:
        if name_addr_only:
            raise cur.error("URI must be enclosed in <>")
        cur.skip_lws()
        m = _ADDR_SPEC_RE.match(cur.text, cur.pos)
        if m is None:
            raise cur.error("missing URI")
        if "?" in m.group():
            raise cur.error("a URI with headers must be enclosed in <>")
        uri = parse_uri(m.group(), cur.what)
        cur.pos = m.end()
    return Address(uri, display, cur.params())


@functools.lru_cache(maxsize=1024)
def parse_address(value: str, what: str = "address", *, name_addr_only: bool = False) -> Address:
    """Parse one name-addr or addr-spec with its parameters (From, To, one Contact)."""
    cur = _Cursor(value, what)
    address = _address(cur, name_addr_only=name_addr_only)
    if not cur.at_end():
        raise cur.error(f"unexpected {cur.peek()!r} after address")
    return address


@dataclass(frozen=True)
class Via:
    """One Via value (RFC 3261 20.42, RFC 3581 rport)."""

    transport: str
    host: str
    port: int | None = None
    params: Params = ()
    protocol: str = "SIP/2.0"

    MAGIC_COOKIE = "z9hG4bK"

    @functools.cached_property
    def _params_by_name(self) -> dict[str, str]:
        return _param_map(self.params)

    @property
    def branch(self) -> str | None:
        """The branch parameter, the transaction id of RFC 3261 17."""
        return self._params_by_name.get("branch")

    @property
    def received(self) -> str | None:
        """The address the previous hop's request came from, if noted."""
        return self._params_by_name.get("received")

    @property
    def rport(self) -> int | Literal[True] | None:
        """RFC 3581: True when asked for (empty), the port once filled, None if absent."""
        value = self._params_by_name.get("rport")
        if value is None:
            return None
        return int(value) if value else True

    @property
    def sent_by(self) -> tuple[str, int | None]:
        """The host and port the sender named."""
        return self.host, self.port

    def param(self, name: str) -> str | None:
        """A Via parameter's value ("" for a flag), or None."""
        return self._params_by_name.get(name.lower())

    def with_params(self, **values: str | None) -> Via:
        """This Via with parameters set (None makes a flag), order kept."""
        params = [
            (k, values.pop(k.lower())) if k.lower() in values else (k, v) for k, v in self.params
        ]
        params.extend(values.items())
        return replace(self, params=tuple(params))

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.protocol}/{self.transport} {self.host}{port}{_format_params(self.params)}"


# Each message's Via, From, To and CSeq are read by the parser's checks, the
# transport, the transaction layer and the TU: parsed once, then looked up.
# The values are frozen, so sharing them is safe. Vias are kept in a table of
# their own, which the transport also fills with the Via it rewrites
# (``via_text``): each request's Via is unique (its branch), so a cache keyed
# by text alone would parse the rewritten one a second time.
_VIA_CACHE_SIZE = 1024
_vias: dict[str, Via] = {}


def _remember_via(value: str, via: Via) -> None:
    if len(_vias) >= _VIA_CACHE_SIZE:
        del _vias[next(iter(_vias))]  # the oldest
    _vias[value] = via


def parse_via(value: str) -> Via:
    """Parse one via-parm (one element of a Via list)."""
    via = _vias.get(value)
    if via is None:
        via = _parse_via(value)
        _remember_via(value, via)
    return via


def via_text(via: Via) -> str:
    """``str(via)``, remembered so that ``parse_via`` of it is a lookup.

    For a Via the parser made (and ``with_params`` changed with valid
    parameters), parsing the text gives an equal Via back.
    """
    text = str(via)
    _remember_via(text, via)
    return text


def _parse_via(value: str) -> Via:
    fast = _VIA_FAST_RE.fullmatch(value)
    if fast is not None:
        # The usual shape (no LWS inside, token parameters): split, not scanned.
        name, version, transport, sent_by, param_text = fast.groups()
        host, port = _split_hostport(sent_by, "Via")
        params: Params = tuple(
            (key, item if eq else None)
            for key, eq, item in (param.partition("=") for param in param_text.split(";")[1:])
        )
    else:
        cur = _Cursor(value, "Via")
        name = cur.token()
        cur.expect("/")
        version = cur.token()
        cur.expect("/")
        transport = cur.token()
        cur.skip_lws()
        m = _SENT_BY_RE.match(cur.text, cur.pos)
        if m is None:
            raise cur.error("missing sent-by host")
        host, port = _split_hostport(m.group(), "Via")
        cur.pos = m.end()
        params = cur.params()
        if not cur.at_end():
            raise cur.error(f"unexpected {cur.peek()!r}")
    via = Via(transport.upper(), host, port, params, f"{name.upper()}/{version}")
    for key in ("received", "maddr"):
        if (got := via.param(key)) is not None:
            _check_host(got, f"Via {key}")
    for key, limit in (("rport", 65535), ("ttl", 255)):
        got = via.param(key)
        if got and (not got.isdigit() or int(got) > limit):
            raise SipParseError(f"Bad Via: invalid {key} {got!r}")
    if via.param("ttl") == "":
        raise SipParseError("Bad Via: ttl needs a value")
    return via


@dataclass(frozen=True)
class CSeq:
    """The CSeq field (RFC 3261 20.16): sequence number and method."""

    number: int
    method: str

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


@functools.lru_cache(maxsize=1024)
def parse_cseq(value: str) -> CSeq:
    """Parse a CSeq value; the number must be below 2**31."""
    cur = _Cursor(value, "CSeq")
    digits = cur.match(_DIGITS_RE, "a sequence number")
    method = cur.token()
    if not cur.at_end():
        raise cur.error(f"unexpected {cur.peek()!r}")
    number = int(digits)
    if number > MAX_CSEQ:
        raise cur.error("sequence number too large")
    return CSeq(number, method)


def _parse_int(value: str, what: str, limit: int) -> int:
    text = value.strip(" \t")
    if not text.isdigit() or not text.isascii():
        raise SipParseError(f"Bad {what}: not a number")
    number = int(text)
    if number > limit:
        raise SipParseError(f"Bad {what}: {text} is out of range")
    return number


@dataclass
class Message:
    """What requests and responses share: header fields and a body."""

    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    @property
    def call_id(self) -> str:
        """The Call-ID."""
        return (self.headers.get("Call-ID") or "").strip(" \t")

    @property
    def cseq(self) -> CSeq:
        """The CSeq, parsed."""
        return parse_cseq(self.headers.get("CSeq") or "")

    @property
    def vias(self) -> list[Via]:
        """Every Via value, top first."""
        return [parse_via(v) for v in self.headers.values("Via")]

    @property
    def top_via(self) -> Via:
        """The topmost Via."""
        return parse_via(self.headers.values("Via")[0])

    @property
    def from_(self) -> Address:
        """The From address."""
        return parse_address(self.headers.get("From") or "", "From")

    @property
    def to(self) -> Address:
        """The To address."""
        return parse_address(self.headers.get("To") or "", "To")

    def start_line(self) -> str:
        """The Request-Line or Status-Line, without CRLF."""
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """The message on the wire, Content-Length set to the body's length."""
        length = str(len(self.body))
        lines = [self.start_line()]
        lines.extend(
            f"{name}: {length if name == 'Content-Length' else value}"
            for name, value in self.headers
        )
        if "Content-Length" not in self.headers:
            lines.append(f"Content-Length: {length}")
        head = "\r\n".join(lines) + "\r\n\r\n"
        return head.encode("utf-8", "surrogateescape") + self.body


@dataclass
class Request(Message):
    """A SIP request (RFC 3261 7.1)."""

    method: str = "OPTIONS"
    uri: Uri = field(default_factory=lambda: Uri("sip", "invalid"))

    def response(self, status: int, reason: str, to_tag: str | None = None) -> Response:
        """A response to this request (RFC 3261 8.2.6).

        ``to_tag`` is added to To when the request has none (RFC 3261
        8.2.6.2: every response but 100 Trying to a request outside a dialog).
        """
        to = None
        if to_tag is not None and status != 100 and self.to.tag is None:
            to = f"{self.headers.get('To')};tag={to_tag}"
        return _response_to(self.headers, status, reason, to)

    def start_line(self) -> str:
        """``Method SP Request-URI SP SIP/2.0``."""
        return f"{self.method} {self.uri} SIP/2.0"


@dataclass
class Response(Message):
    """A SIP response (RFC 3261 7.2)."""

    status: int = 200
    reason: str = "OK"

    def start_line(self) -> str:
        """``SIP/2.0 SP Status-Code SP Reason-Phrase``."""
        return f"SIP/2.0 {self.status} {self.reason}"


def _split_head(data: bytes) -> tuple[list[str], bytes]:
    if len(data) > MAX_MESSAGE_BYTES:
        raise SipParseError("Message Too Large", 513)
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise SipParseError("Missing empty line after header fields")
    head = data[:end].decode("utf-8", "surrogateescape")
    lines = head.split("\r\n")
    if any("\n" in line or "\r" in line for line in lines):
        raise SipParseError("Bare CR or LF in header fields")
    return lines, data[end + 4 :]


def _unfold(lines: list[str]) -> list[tuple[str, str]]:
    fields: list[tuple[str, str]] = []
    for line in lines:
        if line[:1] in (" ", "\t"):
            if not fields:
                raise SipParseError("Start line followed by a continuation line")
            name, value = fields[-1]
            continuation = line.strip(" \t")
            fields[-1] = (name, f"{value} {continuation}".strip(" \t"))
            continue
        m = _HEADER_NAME_RE.match(line)
        if m is None:
            raise SipParseError("Malformed header field line")
        fields.append((m.group(1), line[m.end() :].strip(" \t")))
        if len(fields) > MAX_HEADER_FIELDS:
            raise SipParseError("Too many header fields")
    return fields


def _body(headers: Headers, rest: bytes, transport: Transport) -> bytes:
    """RFC 3261 18.3: Content-Length frames the body; UDP may carry extra bytes."""
    lengths = headers.lines("Content-Length")
    if not lengths:
        if transport == "stream":
            raise SipParseError("Missing Content-Length")
        return rest
    length = _parse_int(lengths[0], "Content-Length", MAX_MESSAGE_BYTES)
    if length > len(rest):
        raise SipParseError("Content-Length larger than message body")
    if transport == "stream" and length != len(rest):
        raise SipParseError("Content-Length does not match message body")
    return rest[:length]


def _check_version(version: str, method: str | None, headers: Headers | None) -> None:
    m = _VERSION_RE.fullmatch(version)
    if m is None or (m.group(1), m.group(2)) != ("2", "0"):
        raise SipParseError("Version Not Supported", 505, method=method, headers=headers)


def _validate(headers: Headers, method: str | None) -> None:
    """Check the fields the transaction and UA layers rely on (RFC 3261 8.1.1)."""
    # The checks below look up many names: the index the layers above use too.
    grouped = headers._index()

    def first(name: str) -> str | None:
        found = grouped.get(name)
        return found[0] if found else None

    def values(name: str) -> list[str]:
        return [item for line in grouped.get(name, ()) for item in split_list(line)]

    for name in MANDATORY_HEADERS:
        if name not in grouped:
            raise SipParseError(f"Missing {name} header field")
    for name in SINGLE_HEADERS:
        if len(grouped.get(name, ())) > 1:
            raise SipParseError(f"More than one {name} header field")
    call_id = first("Call-ID") or ""
    if not _CALL_ID_RE.fullmatch(call_id):
        raise SipParseError("Bad Call-ID")
    vias = values("Via")
    if "" in vias:
        raise SipParseError("Bad Via: empty value")
    for via in vias:
        parse_via(via)
    from_ = parse_address(first("From") or "", "From")
    to = parse_address(first("To") or "", "To")
    for address in (from_, to):
        if address.uri.headers:
            raise SipParseError("Bad From or To: URI headers are not allowed")
    cseq = parse_cseq(first("CSeq") or "")
    if method is not None and cseq.method != method:
        raise SipParseError("CSeq method does not match Request-Line")
    for name in ("Max-Forwards", "Expires", "Date", "Content-Type"):
        if (line := first(name)) is not None:
            _checked_line(name, line)
    contacts = [
        item for line in grouped.get("Contact", ()) for item in _checked_line("Contact", line)
    ]
    if "*" in contacts and len(contacts) > 1:
        raise SipParseError("Bad Contact: '*' mixed with addresses")
    for name in ("Route", "Record-Route", *_TOKEN_LISTS):
        for line in grouped.get(name, ()):
            _checked_line(name, line)


_TOKEN_LISTS = ("Require", "Proxy-Require", "Supported", "Unsupported", "Allow")


# Phones send the same Allow, Supported, Contact and Content-Type in every
# request: a line checked once is looked up after. Only lines that pass are
# remembered (a bad one raises each time).
@functools.lru_cache(maxsize=1024)
def _checked_line(name: str, line: str) -> tuple[str, ...]:
    """Check one field line by its name's grammar; return its values (split for list headers)."""
    if name == "Max-Forwards":
        _parse_int(line, "Max-Forwards", 255)
    elif name == "Expires":
        # RFC 3261 20.19 allows any delta-seconds; an overlarge one is
        # read as the largest (RFC 4475 3.1.2.4), a non-number is an error.
        _parse_int(line, "Expires", 10**30)
    elif name == "Date":
        if not _DATE_RE.fullmatch(line):
            raise SipParseError("Bad Date: not an RFC 1123 date in GMT")
    elif name == "Content-Type":
        cur = _Cursor(line, "Content-Type")
        cur.token()
        cur.expect("/")
        cur.token()
        cur.params()
        if not cur.at_end():
            raise cur.error(f"unexpected {cur.peek()!r}")
    else:
        values = tuple(split_list(line))
        for value in values:
            if name == "Contact":
                if value != "*":
                    parse_address(value, "Contact")
            elif name in ("Route", "Record-Route"):
                parse_address(value, name, name_addr_only=True)
            elif value and not _TOKEN_RE.fullmatch(value):
                raise SipParseError(f"Bad {name}: {value!r} is not a token")
        return values
    return (line,)


def _parse_response(lines: list[str], rest: bytes, transport: Transport) -> Response:
    m = _STATUS_LINE_RE.fullmatch(lines[0])
    if m is None:
        raise SipParseError("Malformed Status-Line")
    _check_version(m.group(1), None, None)
    status = int(m.group(4))
    if not 100 <= status <= 699:
        raise SipParseError("Status-Code out of range")
    reason = m.group(5)
    if any(ch < " " and ch != "\t" for ch in reason):
        raise SipParseError("Control character in Reason-Phrase")
    headers = Headers(_unfold(lines[1:]))
    _validate(headers, None)
    return Response(headers, _body(headers, rest, transport), status, reason)


def parse_message(data: bytes, transport: Transport = "datagram") -> Request | Response:
    """Parse one SIP message.

    ``transport`` says how it arrived: over a datagram transport, bytes past
    Content-Length are dropped and Content-Length may be absent; over a
    stream it is required and must match (the stream framer has cut the
    message at Content-Length already). Raises ``SipParseError`` only.
    """
    lines, rest = _split_head(data)
    start = lines[0]
    if start.startswith(("SIP/", "sip/")) or _STATUS_LINE_RE.fullmatch(start):
        return _parse_response(lines, rest, transport)
    method_match = _TOKEN_RE.match(start)
    method = method_match.group() if method_match else None
    headers: Headers | None = None
    try:
        headers = Headers(_unfold(lines[1:]))
        m = _REQUEST_LINE_RE.fullmatch(start)
        if m is None:
            raise SipParseError("Malformed Request-Line")
        _check_version(m.group(3), method, headers)
        method = m.group(1)
        uri = parse_uri(m.group(2), "Request-URI")
        if uri.headers:
            raise SipParseError("Bad Request-URI: headers are not allowed")
        _validate(headers, method)
        return Request(headers, _body(headers, rest, transport), method, uri)
    except SipParseError as error:
        if error.method is None:
            error.method = method
            error.headers = headers
        raise


def error_response(error: SipParseError) -> Response | None:
    """The response that answers an unparseable request, or None to drop it.

    RFC 3261 8.2.2 / 18.3: a request gets a response with the status the
    parser chose and its reason phrase, copying the fields a response must
    echo. A broken response, an ACK, or a request without a Via cannot be
    answered (there is nowhere to route it).
    """
    if error.method is None or error.method == "ACK" or error.headers is None:
        return None
    if not error.headers.lines("Via"):
        return None
    return _response_to(error.headers, error.status, error.reason)


def _response_to(headers: Headers, status: int, reason: str, to: str | None = None) -> Response:
    """RFC 3261 8.2.6.2: a response echoes Via, From, To (or ``to``), Call-ID and CSeq."""
    fields: list[tuple[str, str]] = []
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        if name == "To" and to is not None:
            fields.append((name, to))
            continue
        fields.extend((name, value) for value in headers.lines(name))
    return Response(Headers(fields), status=status, reason=reason)
