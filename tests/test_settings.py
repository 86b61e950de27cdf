"""Settings: defaults, then the TOML file, then CALLBOX_* variables; bad input stops start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.schema import ConfigError
from appliance.settings import LogLevel, Settings, load_settings


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "callbox.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_embedded_defaults_are_the_documented_ones() -> None:
    settings = load_settings(None, environ={})
    assert settings == Settings()
    assert settings.sip.port == 5060
    assert settings.web.port == 8080
    assert (settings.rtp.port_min, settings.rtp.port_max) == (20000, 29999)
    assert settings.data_path == Path("var").resolve()
    assert settings.control_socket == Path("var/run/switch.sock").resolve()


def test_file_overrides_defaults_and_environment_overrides_file(tmp_path: Path) -> None:
    path = _toml(tmp_path, 'data_dir = "/srv/cb"\n[web]\nport = 9000\n[log]\nlevel = "debug"\n')
    settings = load_settings(path, environ={"CALLBOX_WEB_PORT": "9100"})
    assert settings.data_dir == "/srv/cb"
    assert settings.web.port == 9100
    assert settings.log.level is LogLevel.DEBUG
    assert settings.sip.port == 5060


def test_config_file_from_environment(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[sip]\nport = 5070\n")
    assert load_settings(None, environ={"CALLBOX_CONFIG": str(path)}).sip.port == 5070


def test_unknown_key_in_file_names_file_key_and_allowed_keys(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[web]\nprot = 9000\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    message = str(caught.value)
    assert message.startswith(str(path))
    assert "web.prot: unknown key 'prot'; did you mean 'port'? (allowed: host, port)" in message


def test_bad_value_in_file_says_what_is_allowed(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[web]\nport = 70000\n")
    with pytest.raises(ConfigError, match=r"web.port: must be between 1 and 65535, got 70000"):
        load_settings(path, environ={})
    path = _toml(tmp_path, '[log]\nlevel = "loud"\n')
    with pytest.raises(ConfigError, match=r"log.level: must be one of 'debug', 'info'"):
        load_settings(path, environ={})


def test_unknown_or_bad_environment_variable_is_named() -> None:
    with pytest.raises(ConfigError, match=r"environment: CALLBOX_WEB_PROT: unknown key 'prot'"):
        load_settings(None, environ={"CALLBOX_WEB_PROT": "1"})
    with pytest.raises(ConfigError, match=r"CALLBOX_SIP_PORT: must be an integer, got 'five'"):
        load_settings(None, environ={"CALLBOX_SIP_PORT": "five"})
    with pytest.raises(ConfigError, match=r"CALLBOX_COLOUR: unknown key 'colour'"):
        load_settings(None, environ={"CALLBOX_COLOUR": "blue"})


def test_build_and_engine_switches_are_not_mistaken_for_settings() -> None:
    environ = {"CALLBOX_CORE": "python", "CALLBOX_SANITIZE": "1", "CALLBOX_IO_URING": "off"}
    assert load_settings(None, environ=environ) == Settings()


def test_rtp_range_must_start_even_and_hold_two_pairs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"rtp.port_min: must be even"):
        load_settings(_toml(tmp_path, "[rtp]\nport_min = 20001\n"), environ={})
    with pytest.raises(ConfigError, match=r"rtp.port_max: must leave room"):
        load_settings(_toml(tmp_path, "[rtp]\nport_min = 20000\nport_max = 20001\n"), environ={})


def test_sip_tls_needs_certificate_and_key_and_is_off_without_them(tmp_path: Path) -> None:
    assert not load_settings(None, environ={}).sip.tls_enabled
    with pytest.raises(ConfigError, match=r"sip.tls_key: TLS needs both"):
        load_settings(_toml(tmp_path, '[sip]\ntls_certificate = "/etc/c.pem"\n'), environ={})
    with pytest.raises(ConfigError, match=r"CALLBOX_SIP_DIGEST: must be one of 'md5'"):
        load_settings(None, environ={"CALLBOX_SIP_DIGEST": "sha1"})
    settings = load_settings(
        _toml(tmp_path, '[sip]\ntls_certificate = "/etc/c.pem"\ntls_key = "/etc/k.pem"\n'),
        environ={"CALLBOX_SIP_DIGEST": "sha-256,md5", "CALLBOX_SECURITY_BAN_AFTER": "5"},
    )
    assert settings.sip.tls_enabled
    assert settings.sip.tls_port == 5061
    assert settings.sip.digest.algorithms == ("SHA-256", "MD5")
    assert settings.security.ban_after == 5


def test_unreadable_or_invalid_toml_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the settings file"):
        load_settings(tmp_path / "missing.toml", environ={})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(_toml(tmp_path, "[web\n"), environ={})
