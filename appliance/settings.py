"""Settings of the appliance's processes: embedded defaults, then a TOML file, then environment.

Settings say where things live and listen (data folder, ports); the call
center's own configuration (trunks, numbers, queues, ...) is in the store.

Order, each overriding the one before:
1. the defaults below, which are what ``make run`` uses;
2. a TOML file: ``--config FILE``, else ``$CALLBOX_CONFIG``, else
   ``/etc/callbox/callbox.toml`` if it exists;
3. environment variables ``CALLBOX_<SECTION>_<KEY>`` (``CALLBOX_WEB_PORT=8081``),
   or ``CALLBOX_<KEY>`` for top-level keys (``CALLBOX_DATA_DIR``).

An unknown key or a bad value stops start-up with a ``ConfigError`` that names
the key, where it came from and what is allowed.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from appliance.schema import ConfigError, Pattern, Range, dump, parse_record

DEFAULT_CONFIG_FILE = Path("/etc/callbox/callbox.toml")

# CALLBOX_* variables that are not settings: switches read elsewhere.
# CALLBOX_IO_URING=off is the media engine's own (its workers' I/O), read by the core.
NOT_SETTINGS = frozenset({"CALLBOX_CONFIG", "CALLBOX_CORE", "CALLBOX_SANITIZE", "CALLBOX_IO_URING"})

Port = Annotated[int, Range(1, 65535)]
Host = Annotated[str, Pattern(r"[0-9A-Za-z.:_-]+", "an IP address or host name")]


class LogLevel(StrEnum):
    """How much the services log."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class DigestOffer(StrEnum):
    """Digest algorithms the registrar offers, in order of preference.

    MD5 alone is the default because the phones we test with (baresip 1.0)
    refuse a challenge set that includes SHA-256 at all, and sipsak and
    SIPp answer only the first challenge and know only MD5.
    """

    MD5 = "md5"
    MD5_SHA256 = "md5,sha-256"
    SHA256_MD5 = "sha-256,md5"
    SHA256 = "sha-256"

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The RFC 7616 algorithm names, in order."""
        return tuple(name.upper() for name in self.value.split(","))


@dataclass(frozen=True)
class SipSettings:
    """Where the SIP stack listens (UDP and TCP share the port) and the digest realm."""

    host: Host = "0.0.0.0"
    port: Port = 5060
    realm: Annotated[str, Pattern(r"[0-9A-Za-z.:_-]{1,64}", "1-64 letters, digits, '.:_-'")] = (
        "callbox"
    )
    """The digest realm phones authenticate in; changing it makes them ask for credentials."""
    digest: DigestOffer = DigestOffer.MD5
    tls_port: Port = 5061
    tls_certificate: str = ""
    """PEM certificate (chain) file for the TLS listener; empty: no TLS listener."""
    tls_key: str = ""
    """PEM private key file of ``tls_certificate``."""
    no_answer_s: Annotated[float, Range(1, 600)] = 60.0
    """How long a call rings before it gives up (480, cause 19 no answer)."""

    def __post_init__(self) -> None:
        if bool(self.tls_certificate) != bool(self.tls_key):
            missing = "tls_key" if self.tls_certificate else "tls_certificate"
            raise ConfigError("TLS needs both tls_certificate and tls_key", missing)
        if self.tls_certificate and self.tls_port == self.port:
            raise ConfigError(f"must differ from port ({self.port})", "tls_port")

    @property
    def tls_enabled(self) -> bool:
        """True when a certificate is configured, so the TLS listener runs."""
        return bool(self.tls_certificate)


@dataclass(frozen=True)
class SecuritySettings:
    """Slowing and banning sources that fail authentication; dropping SIP scanners."""

    slow_after: Annotated[int, Range(1, 1000)] = 3
    """Failed authentications (within ``window_s``) before refusals to that address wait."""
    slow_s: Annotated[float, Range(0, 30)] = 2.0
    """How long each refusal to a slowed address waits."""
    ban_after: Annotated[int, Range(1, 1000)] = 10
    """Failed authentications (within ``window_s``) that ban the address."""
    window_s: Annotated[float, Range(1, 86400)] = 300.0
    """How far back failures count."""
    ban_s: Annotated[float, Range(1, 30 * 86400)] = 3600.0
    """How long a ban lasts."""
    drop_scanners: bool = True
    """Drop requests whose User-Agent is a known scanner's, without an answer."""
    source_messages_per_s: Annotated[float, Range(1, 1_000_000)] = 500.0
    """SIP messages one IP address may send per second, sustained; more are dropped."""
    source_burst: Annotated[int, Range(1, 1_000_000)] = 1000
    """SIP messages one IP address may send at once before that rate applies."""


@dataclass(frozen=True)
class WebSettings:
    """Where the admin UI, agent desktop and public API listen."""

    host: Host = "0.0.0.0"
    port: Port = 8080


@dataclass(frozen=True)
class LoginSettings:
    """The web UI's sign-in: how long a session lasts, and slowing then locking out guessers.

    The lockout counts failed logins per client address the way ``[security]``
    counts failed SIP authentications (``appliance.guard``).
    """

    session_idle_s: Annotated[float, Range(60, 7 * 86400)] = 1800.0
    """A session not used for this long ends (the user signs in again)."""
    session_max_s: Annotated[float, Range(60, 30 * 86400)] = 43200.0
    """A session ends this long after sign-in, however busy."""
    slow_after: Annotated[int, Range(1, 1000)] = 3
    """Failed logins (within ``window_s``) from one address before each refusal waits."""
    slow_s: Annotated[float, Range(0, 30)] = 1.0
    """How long each refusal to a slowed address waits."""
    ban_after: Annotated[int, Range(1, 1000)] = 10
    """Failed logins (within ``window_s``) from one address that lock it out."""
    window_s: Annotated[float, Range(1, 86400)] = 900.0
    """How far back failed logins count."""
    ban_s: Annotated[float, Range(1, 30 * 86400)] = 900.0
    """How long a lockout lasts (every login from that address is refused meanwhile)."""


@dataclass(frozen=True)
class ControlSettings:
    """The switch's control API: always on its unix socket, on loopback TCP only if asked.

    The API has no authentication of its own (the socket's file mode decides
    who may use it), so the switch refuses to start with a ``tcp_host`` that
    is not a loopback address.
    """

    tcp_host: Host = "127.0.0.1"
    tcp_port: Annotated[int, Range(0, 65535)] = 0
    """Also serve the control API on ``tcp_host``:``tcp_port``, for development; 0: off."""
    event_backlog: Annotated[int, Range(1, 1_000_000)] = 1000
    """Events a WebSocket client may fall behind by before the switch drops it."""


@dataclass(frozen=True)
class RtpSettings:
    """The UDP port range for call media (RTP on even ports, RTCP on the next odd one)."""

    port_min: Port = 20000
    port_max: Port = 29999
    timeout_s: Annotated[float, Range(1, 3600)] = 60.0
    """A call whose RTP stops this long (not on hold) is hung up."""

    def __post_init__(self) -> None:
        if self.port_min % 2:
            raise ConfigError(
                f"must be even (RTP uses even ports), got {self.port_min}", "port_min"
            )
        if self.port_max - self.port_min < 3:
            raise ConfigError(
                f"must leave room for at least two RTP/RTCP pairs above port_min "
                f"({self.port_min}), got {self.port_max}",
                "port_max",
            )


class PromptLanguage(StrEnum):
    """Languages of the built-in prompts (``appliance/ivr/prompts.py``)."""

    ZH = "zh"
    EN = "en"


@dataclass(frozen=True)
class IvrSettings:
    """The IVR: which language's built-in prompts callers hear (a number may choose its own)."""

    prompt_language: PromptLanguage = PromptLanguage.ZH
    record_queue_calls: bool = True
    """Record every call a queue connects to an agent (stereo WAV under the data folder's
    ``recordings/``); off, the calls are bridged unrecorded (``callbox bench capacity
    --no-record`` measures the difference)."""


@dataclass(frozen=True)
class MediaSettings:
    """The media core's worker threads (0: one per CPU core)."""

    workers: Annotated[int, Range(0, 256)] = 0


@dataclass(frozen=True)
class StoreSettings:
    """The LMDB store: the largest size the database may grow to."""

    map_size_mb: Annotated[int, Range(16, 1024 * 1024)] = 4096


@dataclass(frozen=True)
class LogSettings:
    """Logging: to journald under systemd, readable lines on stderr otherwise."""

    level: LogLevel = LogLevel.INFO


@dataclass(frozen=True)
class Settings:
    """All settings of a Callbox installation."""

    data_dir: str = "./var"
    sip: SipSettings = field(default_factory=SipSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    web: WebSettings = field(default_factory=WebSettings)
    login: LoginSettings = field(default_factory=LoginSettings)
    control: ControlSettings = field(default_factory=ControlSettings)
    rtp: RtpSettings = field(default_factory=RtpSettings)
    media: MediaSettings = field(default_factory=MediaSettings)
    ivr: IvrSettings = field(default_factory=IvrSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    log: LogSettings = field(default_factory=LogSettings)

    @property
    def data_path(self) -> Path:
        """The data folder, absolute."""
        return Path(self.data_dir).expanduser().resolve()

    @property
    def db_path(self) -> Path:
        """The LMDB environment (a folder)."""
        return self.data_path / "db"

    @property
    def prompts_path(self) -> Path:
        """The built-in prompts, one folder per language (generated at set-up)."""
        return self.data_path / "prompts"

    @property
    def run_path(self) -> Path:
        """Sockets and other files that live only while the appliance runs."""
        return self.data_path / "run"

    @property
    def control_socket(self) -> Path:
        """The switch's control API (a unix socket)."""
        return self.run_path / "switch.sock"


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _env_layer(environ: Mapping[str, str]) -> dict[str, Any]:
    """``CALLBOX_*`` variables as a nested mapping, rejecting ones that are no setting."""
    hints = typing.get_type_hints(Settings)
    sections = {name for name, tp in hints.items() if dataclasses.is_dataclass(tp)}
    layer: dict[str, Any] = {}
    for name, value in sorted(environ.items()):
        if not name.startswith("CALLBOX_") or name in NOT_SETTINGS:
            continue
        rest = name.removeprefix("CALLBOX_").lower()
        section, _, key = rest.partition("_")
        if section in sections and key:
            layer.setdefault(section, {})[key] = value
        else:
            layer[rest] = value
    return layer


def _env_name(path: str) -> str:
    return "CALLBOX_" + path.replace(".", "_").upper()


def load_settings(
    config_file: Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Settings from defaults, the TOML file, then the environment (see module docs)."""
    environ = os.environ if environ is None else environ
    if config_file is None and environ.get("CALLBOX_CONFIG"):
        config_file = Path(environ["CALLBOX_CONFIG"])
    if config_file is None and DEFAULT_CONFIG_FILE.exists():
        config_file = DEFAULT_CONFIG_FILE
    data: dict[str, Any] = {}
    if config_file is not None:
        try:
            data = tomllib.loads(config_file.read_text(encoding="utf-8"))
        except OSError as exc:
            message = f"cannot read the settings file: {exc.strerror}"
            raise ConfigError(message, "", None, str(config_file)) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"not valid TOML: {exc}", "", None, str(config_file)) from None
        try:
            parse_record(Settings, data)
        except ConfigError as exc:
            raise exc.located(str(config_file), None) from None
    env = _env_layer(environ)
    try:
        return parse_record(Settings, _merge(data, env), from_strings=True)
    except ConfigError as exc:
        # The file was valid alone, so the variable is at fault.
        raise ConfigError(exc.message, _env_name(exc.path), None, "environment") from None


def describe_settings(settings: Settings) -> dict[str, Any]:
    """The effective settings as plain data (for ``callbox settings``)."""
    result: dict[str, Any] = dump(settings)
    return result
