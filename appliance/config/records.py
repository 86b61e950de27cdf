"""The call center's configuration records: one schema for YAML, the store and the REST API.

Each record is a frozen dataclass with a ``KIND`` (its sub-database) and a
``SCHEMA_VERSION``. ``Configuration`` is the whole document that
``callbox config export|import`` reads and writes; ``Configuration.check``
verifies that every reference (a number's flow, a queue's skill, a node's
next node) points at something that exists.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import re
import struct
import zoneinfo
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, ClassVar

from appliance.numbers import SUPPORTED_REGIONS
from appliance.schema import ConfigError, Length, Name, Pattern, Range, Tagged, join
from appliance.settings import PromptLanguage
from appliance.store.keys import name_key

Seconds = Annotated[int, Range(1, 86400)]
Digits = Annotated[str, Pattern(r"[0-9*#]{1,32}", "1-32 of the keys 0-9, * and #")]
PhoneNumber = Annotated[str, Pattern(r"\+?[0-9]{1,32}", "a phone number: digits, optional '+'")]
ClockTime = Annotated[str, Pattern(r"([01][0-9]|2[0-3]):[0-5][0-9]|24:00", "a time HH:MM")]
Key = Annotated[str, Pattern(r"[0-9*#]", "one key 0-9, * or #")]
Date = Annotated[str, Pattern(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", "a date YYYY-MM-DD")]


class NamedRecord:
    """A record keyed by its ``name`` field."""

    name: str

    def key(self) -> bytes:
        """The record's key: its name."""
        return name_key(self.name)


class Codec(StrEnum):
    """Audio codecs a trunk or phone may use (telephone-event is always offered)."""

    PCMA = "PCMA"
    PCMU = "PCMU"
    G722 = "G722"
    G729 = "G729"
    OPUS = "opus"


class Transport(StrEnum):
    """SIP transports."""

    UDP = "udp"
    TCP = "tcp"
    TLS = "tls"


class TrunkMode(StrEnum):
    """How a trunk is trusted: we register to it, or we accept its addresses."""

    REGISTER = "register"
    IP = "ip"


class DialledFrom(StrEnum):
    """Where an inbound call from a trunk names the number the caller dialled."""

    REQUEST_URI = "request_uri"
    """The Request-URI's user part (gateways and most IP trunks)."""
    TO = "to"
    """The To header (providers that send calls to the registered Contact)."""


@dataclass(frozen=True)
class Trunk(NamedRecord):
    """A SIP trunk to a provider or an E1/FXO gateway.

    ``host`` is where requests go (and an address calls may come from, like
    those in ``allow``); ``domain`` is the provider's SIP domain when it is
    not the host. ``username`` and ``password`` register a ``register``
    trunk and answer challenges to calls on any trunk. ``caller_id`` is the
    number presented on outbound calls; inbound numbers are normalised as
    dialled in ``region``. ``options_interval`` seconds between OPTIONS
    pings (0: none); ``options_down_after`` unanswered pings in a row mark
    the trunk down.
    """

    KIND: ClassVar[str] = "trunks"
    SCHEMA_VERSION: ClassVar[int] = 1

    name: Name
    mode: TrunkMode
    host: Annotated[str, Pattern(r"[0-9A-Za-z.:_\[\]-]+", "an IP address or host name")]
    port: Annotated[int, Range(1, 65535)] = 5060
    transport: Transport = Transport.UDP
    domain: Annotated[str, Pattern(r"[0-9A-Za-z.:_\[\]-]*", "a SIP domain (host name)")] = ""
    username: str = ""
    password: str = ""
    allow: list[str] = field(default_factory=list)
    codecs: Annotated[list[Codec], Length(1)] = field(
        default_factory=lambda: [Codec.PCMA, Codec.PCMU]
    )
    register_expires: Annotated[int, Range(60, 86400)] = 3600
    caller_id: PhoneNumber | None = None
    dialled_from: DialledFrom = DialledFrom.REQUEST_URI
    region: Annotated[str, Pattern(r"[A-Z]{2}", "a two-letter region code such as CN")] = "CN"
    options_interval: Annotated[int, Range(0, 3600)] = 30
    options_down_after: Annotated[int, Range(1, 100)] = 2

    def __post_init__(self) -> None:
        if self.mode is TrunkMode.REGISTER and not (self.username and self.password):
            raise ConfigError("a trunk with mode 'register' needs a username and a password")
        if self.mode is TrunkMode.IP and not self.allow:
            raise ConfigError(
                "a trunk with mode 'ip' needs 'allow': the addresses (IP or CIDR) it calls from"
            )
        _check_networks(self.allow, "allow")
        if self.region not in SUPPORTED_REGIONS:
            raise ConfigError(f"is not a region libphonenumber knows: {self.region!r}", "region")
        for key in ("username", "password"):
            if not getattr(self, key).isprintable():
                raise ConfigError("must be printable text (no control characters)", key)

    @property
    def sip_domain(self) -> str:
        """The domain of the trunk's URIs: ``domain``, else ``host``."""
        return self.domain or self.host


def _check_networks(networks: list[str], key: str) -> None:
    """Fail unless every entry of ``networks`` is an IP address or CIDR network."""
    for i, network in enumerate(networks):
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ConfigError(
                f"must be an IP address or network (CIDR), got {network!r}", join(key, i)
            ) from None


ExtensionNumber = Annotated[str, Pattern(r"[0-9]{2,16}", "2-16 digits")]


@dataclass(frozen=True)
class Extension:
    """A phone's SIP account (分机): it registers with ``number`` and ``password`` (digest).

    The password is kept as given, because digest authentication needs the
    shared secret (or a hash bound to the realm, which is a setting that
    may change). ``networks`` limits where the phone may register from;
    ``max_contacts`` how many devices may register at once; extensions with
    the same ``pickup_group`` may pick up each other's ringing calls (an
    INVITE with Replaces, RFC 3891; empty: only its own phones may).
    """

    KIND: ClassVar[str] = "extensions"
    SCHEMA_VERSION: ClassVar[int] = 1

    number: ExtensionNumber
    password: Annotated[str, Length(8, 128)]
    display_name: Annotated[str, Length(0, 64)] = ""
    networks: list[str] = field(default_factory=list)
    max_contacts: Annotated[int, Range(1, 10)] = 3
    codecs: Annotated[list[Codec], Length(1)] = field(
        default_factory=lambda: [Codec.PCMA, Codec.PCMU]
    )
    pickup_group: Annotated[str, Length(0, 32)] = ""

    def __post_init__(self) -> None:
        _check_networks(self.networks, "networks")
        if not self.password.isprintable():
            raise ConfigError("must be printable text (no control characters)", "password")

    def allows(self, address: str) -> bool:
        """Whether a phone at ``address`` (an IP address) may use this extension."""
        if not self.networks:
            return True
        ip = ipaddress.ip_address(address)
        return any(ip in ipaddress.ip_network(n, strict=False) for n in self.networks)

    def key(self) -> bytes:
        """The record's key: the extension number."""
        return name_key(self.number)


@dataclass(frozen=True)
class InboundNumber:
    """A number callers dial (DID, 400/800, ...), answered by its own IVR flow."""

    KIND: ClassVar[str] = "numbers"
    SCHEMA_VERSION: ClassVar[int] = 1

    number: PhoneNumber
    flow: Name
    trunk: Name | None = None
    label: str = ""
    language: PromptLanguage | None = None
    """The built-in prompts' language for this number (None: the site's ``ivr.prompt_language``)."""

    def key(self) -> bytes:
        return name_key(self.number)


@dataclass(frozen=True)
class AnswerNode:
    """Answer the call, then go on."""

    TAG: ClassVar[str] = "answer"
    next: Name


@dataclass(frozen=True)
class PlayNode:
    """Play a prompt, then go on."""

    TAG: ClassVar[str] = "play"
    prompt: Name
    next: Name


@dataclass(frozen=True)
class MenuNode:
    """Play a prompt and branch on one key; retry on timeout or a key with no branch."""

    TAG: ClassVar[str] = "menu"
    prompt: Name
    options: Annotated[dict[Key, Name], Length(1)]
    timeout: Seconds = 5
    retries: Annotated[int, Range(0, 10)] = 2
    invalid_prompt: Name | None = None
    failed: Name | None = None


@dataclass(frozen=True)
class CollectNode:
    """Collect a number of digits into a call variable."""

    TAG: ClassVar[str] = "collect"
    prompt: Name
    variable: Name
    next: Name
    min_digits: Annotated[int, Range(1, 32)] = 1
    max_digits: Annotated[int, Range(1, 32)] = 16
    timeout: Seconds = 5
    terminator: Annotated[str, Pattern(r"[*#]?", "'#', '*' or empty")] = "#"


@dataclass(frozen=True)
class TimeConditionNode:
    """Branch on whether the time now is inside a schedule."""

    TAG: ClassVar[str] = "time_condition"
    schedule: Name
    open: Name
    closed: Name


@dataclass(frozen=True)
class QueueNode:
    """Queue the caller for an agent; ``timeout`` is where the queue sends it when it gives up."""

    TAG: ClassVar[str] = "queue"
    queue: Name
    timeout: Name | None = None


@dataclass(frozen=True)
class TransferNode:
    """Transfer the call to an extension or an outside number."""

    TAG: ClassVar[str] = "transfer"
    destination: PhoneNumber


@dataclass(frozen=True)
class HangupNode:
    """End the call."""

    TAG: ClassVar[str] = "hangup"


IvrNode = Annotated[
    AnswerNode
    | PlayNode
    | MenuNode
    | CollectNode
    | TimeConditionNode
    | QueueNode
    | TransferNode
    | HangupNode,
    Tagged("type"),
]

# The fields of each node type that name another node of the same flow.
NODE_LINKS = ("next", "failed", "open", "closed", "timeout")
# The fields of each node type that name a prompt.
PROMPT_LINKS = ("prompt", "invalid_prompt")


@dataclass(frozen=True)
class IvrFlow(NamedRecord):
    """An IVR flow: named nodes and the node a call starts at."""

    KIND: ClassVar[str] = "flows"
    SCHEMA_VERSION: ClassVar[int] = 1

    name: Name
    start: Name
    nodes: Annotated[dict[Name, IvrNode], Length(1)]


class Strategy(StrEnum):
    """How a queue picks the agent to offer a call to."""

    LONGEST_IDLE = "longest_idle"
    ROUND_ROBIN = "round_robin"
    FEWEST_CALLS = "fewest_calls"
    RING_ALL = "ring_all"
    SKILL_LEVEL = "skill_level"
    RANDOM = "random"


@dataclass(frozen=True)
class Queue(NamedRecord):
    """A queue of callers waiting for agents with a skill."""

    KIND: ClassVar[str] = "queues"
    SCHEMA_VERSION: ClassVar[int] = 1

    name: Name
    skill: Name
    strategy: Strategy = Strategy.LONGEST_IDLE
    ring_timeout: Annotated[int, Range(5, 300)] = 20
    wrapup: Annotated[int, Range(0, 3600)] = 10
    max_wait: Annotated[int, Range(10, 86400)] = 300
    hold_music: Name | None = None


@dataclass(frozen=True)
class Skill(NamedRecord):
    """A skill, which is also an agent group (技能组)."""

    KIND: ClassVar[str] = "skills"
    SCHEMA_VERSION: ClassVar[int] = 1

    name: Name
    label: str = ""


class AgentType(StrEnum):
    """Ordinary agent or supervisor (普通座席/班长座席)."""

    ORDINARY = "ordinary"
    SUPERVISOR = "supervisor"


@dataclass(frozen=True)
class Agent:
    """An agent: number (工号), name, one group, per-skill levels, the extension they answer on."""

    KIND: ClassVar[str] = "agents"
    SCHEMA_VERSION: ClassVar[int] = 1

    number: Annotated[str, Pattern(r"[0-9]{1,16}", "1-16 digits")]
    name: Annotated[str, Length(1, 64)]
    group: Name
    type: AgentType = AgentType.ORDINARY
    extension: PhoneNumber | None = None
    skills: dict[Name, Annotated[int, Range(1, 10)]] = field(default_factory=dict)
    location: str = ""

    def key(self) -> bytes:
        return name_key(self.number)


class Weekday(StrEnum):
    """Days of the week."""

    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"


@dataclass(frozen=True)
class Period:
    """Open hours on some days of the week."""

    days: Annotated[list[Weekday], Length(1, 7)]
    start: ClockTime
    end: ClockTime

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ConfigError(f"must be later than start ({self.start}), got {self.end}", "end")


@dataclass(frozen=True)
class Schedule(NamedRecord):
    """Business hours: weekly periods, and holiday dates when it is closed all day."""

    KIND: ClassVar[str] = "schedules"
    SCHEMA_VERSION: ClassVar[int] = 1

    name: Name
    periods: list[Period] = field(default_factory=list)
    holidays: list[Date] = field(default_factory=list)
    timezone: str = "Asia/Shanghai"

    def __post_init__(self) -> None:
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"is not a time zone name such as Asia/Shanghai: {self.timezone!r}", "timezone"
            ) from None
        for i, day in enumerate(self.holidays):
            try:
                dt.date.fromisoformat(day)
            except ValueError:
                raise ConfigError(f"is not a calendar date: {day!r}", join("holidays", i)) from None


BUILTIN_PROMPTS = frozenset(
    {"welcome", "menu", "please_hold", "all_busy", "invalid", "goodbye", "closed", "hold_music"}
)
"""Prompts every appliance has (generated at set-up in each language); flows may name them."""


@dataclass(frozen=True)
class Prompt(NamedRecord):
    """A recorded prompt of the site's own: a WAV file in the prompts folder (or an absolute path).

    Flows and queues name prompts; a name here may also replace a built-in one.
    """

    KIND: ClassVar[str] = "prompts"
    SCHEMA_VERSION: ClassVar[int] = 1

    name: Name
    file: Annotated[str, Length(1, 255)]
    label: str = ""


class Role(StrEnum):
    """What a web user may do."""

    ADMIN = "admin"
    SUPERVISOR = "supervisor"
    AGENT = "agent"


@dataclass(frozen=True)
class User:
    """A web user. ``password`` is accepted on import only and stored as an argon2 hash.

    ``must_change_password`` marks a one-time password (the admin's from the
    first boot, or one from ``callbox user passwd --one-time``): signing in
    with it leads only to choosing a new one.
    """

    KIND: ClassVar[str] = "users"
    SCHEMA_VERSION: ClassVar[int] = 2

    username: Name
    role: Role
    password_hash: str = ""
    password: str | None = field(default=None, metadata={"dump": False})
    agent: str | None = None
    must_change_password: bool = False

    def __post_init__(self) -> None:
        if self.password_hash and not self.password_hash.startswith("$argon2"):
            raise ConfigError("must be an argon2 hash; give 'password' instead", "password_hash")

    def key(self) -> bytes:
        return name_key(self.username)


ALL_EXTENSIONS = "all"
"""In a route's ``callers``: every extension may use it."""
IVR_CALLER = "ivr"
"""In a route's ``callers``: IVR transfer nodes may use it."""

RoutePattern = Annotated[
    str,
    Pattern(
        r"\+?([0-9*#XZN]|\[[0-9]+(-[0-9][0-9]*)*\])+\.?",
        "a dial pattern: digits, X (0-9), Z (1-9), N (2-9), [1-5] or [135], "
        "and an optional final '.' (one or more digits more)",
    ),
]
CallerEntry = Annotated[str, Pattern(r"all|ivr|[0-9]{2,16}", "'all', 'ivr' or an extension number")]

_PATTERN_CLASSES = {"X": "[0-9]", "Z": "[1-9]", "N": "[2-9]", ".": "[0-9*#]+"}


@functools.lru_cache(maxsize=256)
def compile_dial_pattern(pattern: str) -> re.Pattern[str]:
    """The regular expression a dial pattern stands for (the whole number must match).

    ``X`` is any digit, ``Z`` 1-9, ``N`` 2-9, ``[...]`` one digit of a set
    with ranges (``[1-5]``, ``[135]``), a final ``.`` one or more digits
    more; anything else stands for itself. So ``0.`` is every number that
    starts with 0 and ``1[3-9]XXXXXXXXX`` a Chinese mobile number.
    """
    parts = []
    for token in _pattern_tokens(pattern):
        if token.startswith("["):
            parts.append(token)
        else:
            parts.append(_PATTERN_CLASSES.get(token, re.escape(token)))
    return re.compile("".join(parts))


def _pattern_tokens(pattern: str) -> list[str]:
    """A dial pattern's tokens: each stands for one character of the number (``.`` for one
    or more)."""
    return re.findall(r"\[[^\]]*\]|.", pattern)


_POSITION = struct.Struct(">I")


@dataclass(frozen=True)
class OutboundRoute(NamedRecord):
    """A way out for dialled numbers that match ``pattern``, tried in the routes' order.

    The number sent loses its first ``strip`` digits and gets ``prepend``
    in front; ``trunks`` are tried in order (the next on a 5xx, 408,
    no answer from the trunk or a trunk that is down; never after a
    busy-like final answer). ``caller_id`` is presented instead of the
    trunk's own. ``callers`` says who may use the route: extension numbers,
    ``all`` (every extension) and ``ivr`` (IVR transfer nodes); no one
    by default.
    """

    KIND: ClassVar[str] = "routes"
    SCHEMA_VERSION: ClassVar[int] = 1
    ORDERED: ClassVar[bool] = True
    """The store keeps the routes in the document's order (``position_key``)."""

    name: Name
    pattern: RoutePattern
    trunks: Annotated[list[Name], Length(1)]
    strip: Annotated[int, Range(0, 31)] = 0
    prepend: Annotated[str, Pattern(r"\+?[0-9*#]{0,31}", "digits with an optional '+'")] = ""
    caller_id: PhoneNumber | None = None
    callers: list[CallerEntry] = field(default_factory=list)

    def __post_init__(self) -> None:
        shortest = len(_pattern_tokens(self.pattern))
        if self.strip > shortest or (self.strip == shortest and not self.prepend):
            raise ConfigError(
                f"strips {self.strip} digits, but the pattern matches numbers of "
                f"{shortest} digits: nothing would be left to dial",
                "strip",
            )

    def matches(self, dialled: str) -> bool:
        """Whether ``dialled`` fits the route's pattern."""
        return compile_dial_pattern(self.pattern).fullmatch(dialled) is not None

    def number_sent(self, dialled: str) -> str:
        """``dialled`` as the trunk gets it: ``strip`` digits off the front, ``prepend`` on."""
        return self.prepend + dialled[self.strip :]

    def allows(self, caller: str) -> bool:
        """Whether ``caller`` (an extension number, or ``ivr``) may use the route."""
        if caller == IVR_CALLER:
            return IVR_CALLER in self.callers
        return caller in self.callers or ALL_EXTENSIONS in self.callers

    def position_key(self, position: int) -> bytes:
        """The stored key of the route at ``position`` in the list: keys sort as the list."""
        return _POSITION.pack(position) + self.key()


ConfigRecord = (
    Trunk
    | Extension
    | InboundNumber
    | IvrFlow
    | Queue
    | Skill
    | Agent
    | Schedule
    | Prompt
    | User
    | OutboundRoute
)

CONFIG_RECORDS: tuple[type[ConfigRecord], ...] = (
    Trunk,
    Extension,
    InboundNumber,
    IvrFlow,
    Queue,
    Skill,
    Agent,
    Schedule,
    Prompt,
    User,
    OutboundRoute,
)


def _require(value: str | None, known: set[str], what: str, path: str) -> None:
    """Fail unless ``value`` (if given) names one of ``known``."""
    if value is not None and value not in known:
        choices = ", ".join(sorted(known)) or "none defined"
        raise ConfigError(f"no {what} named {value!r} (defined: {choices})", path)


# Sections of the configuration document, by record kind.
SECTIONS = {cls.KIND: cls for cls in CONFIG_RECORDS}


@dataclass(frozen=True)
class Configuration:
    """The whole call-center configuration, as ``callbox config export`` writes it."""

    trunks: list[Trunk] = field(default_factory=list)
    extensions: list[Extension] = field(default_factory=list)
    numbers: list[InboundNumber] = field(default_factory=list)
    flows: list[IvrFlow] = field(default_factory=list)
    queues: list[Queue] = field(default_factory=list)
    skills: list[Skill] = field(default_factory=list)
    agents: list[Agent] = field(default_factory=list)
    schedules: list[Schedule] = field(default_factory=list)
    prompts: list[Prompt] = field(default_factory=list)
    users: list[User] = field(default_factory=list)
    routes: list[OutboundRoute] = field(default_factory=list)
    """Outbound routes, tried in this order; without one nothing goes out."""

    def __post_init__(self) -> None:
        self._check_unique()
        self._check_references()

    def _check_unique(self) -> None:
        for section in SECTIONS:
            seen: dict[bytes, int] = {}
            for i, record in enumerate(getattr(self, section)):
                key = record.key()
                if key in seen:
                    name = key.decode()
                    raise ConfigError(
                        f"duplicate {name!r}: {section}[{seen[key]}] already has it",
                        join(section, i),
                    )
                seen[key] = i

    def _check_references(self) -> None:
        def names(section: str, attr: str) -> set[str]:
            return {getattr(r, attr) for r in getattr(self, section)}

        flows = names("flows", "name")
        trunks = names("trunks", "name")
        queues = names("queues", "name")
        skills = names("skills", "name")
        schedules = names("schedules", "name")
        agents = names("agents", "number")
        prompts = set(BUILTIN_PROMPTS) | names("prompts", "name")
        extensions = names("extensions", "number")

        for i, number in enumerate(self.numbers):
            _require(number.flow, flows, "flow", join(join("numbers", i), "flow"))
            _require(number.trunk, trunks, "trunk", join(join("numbers", i), "trunk"))
        for i, queue in enumerate(self.queues):
            _require(queue.skill, skills, "skill", join(join("queues", i), "skill"))
            _require(queue.hold_music, prompts, "prompt", join(join("queues", i), "hold_music"))
        for i, agent in enumerate(self.agents):
            path = join("agents", i)
            _require(agent.group, skills, "skill group", join(path, "group"))
            _require(agent.extension, extensions, "extension", join(path, "extension"))
            for skill in agent.skills:
                _require(skill, skills, "skill", join(join(path, "skills"), skill))
        for i, user in enumerate(self.users):
            _require(user.agent, agents, "agent number", join(join("users", i), "agent"))
        for i, flow in enumerate(self.flows):
            self._check_flow(flow, join("flows", i), queues, schedules, prompts)
        for i, route in enumerate(self.routes):
            path = join("routes", i)
            for j, trunk in enumerate(route.trunks):
                _require(trunk, trunks, "trunk", join(join(path, "trunks"), j))
            for j, caller in enumerate(route.callers):
                if caller not in (ALL_EXTENSIONS, IVR_CALLER):
                    _require(caller, extensions, "extension", join(join(path, "callers"), j))

    @staticmethod
    def _check_flow(
        flow: IvrFlow, path: str, queues: set[str], schedules: set[str], prompts: set[str]
    ) -> None:
        nodes = set(flow.nodes)
        _require(flow.start, nodes, "node", join(path, "start"))
        for node_id, node in flow.nodes.items():
            node_path = join(join(path, "nodes"), node_id)
            for link in NODE_LINKS:
                target = getattr(node, link, None)
                if link == "timeout" and not isinstance(node, QueueNode):
                    continue
                _require(target, nodes, "node", join(node_path, link))
            for link in PROMPT_LINKS:
                _require(getattr(node, link, None), prompts, "prompt", join(node_path, link))
            if isinstance(node, MenuNode):
                for digit, target in node.options.items():
                    _require(target, nodes, "node", join(join(node_path, "options"), digit))
            if isinstance(node, QueueNode):
                _require(node.queue, queues, "queue", join(node_path, "queue"))
            if isinstance(node, TimeConditionNode):
                _require(node.schedule, schedules, "schedule", join(node_path, "schedule"))
