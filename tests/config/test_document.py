"""The configuration document: validation with lines, references, import and export."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import lmdb
import msgpack
import pytest
from argon2 import PasswordHasher

from appliance.calllog.records import CALL_LOG_RECORDS, CallDirection, CallRecord
from appliance.config import (
    CONFIG_RECORDS,
    Configuration,
    dump_document,
    export_configuration,
    import_configuration,
    load_document,
)
from appliance.config.records import Codec, MenuNode, OutboundRoute, QueueNode, Strategy
from appliance.schema import ConfigError
from appliance.store import Store, time_key

DEMO = Path(__file__).parents[2] / "examples" / "demo.yaml"


@pytest.fixture
def demo_text() -> str:
    return DEMO.read_text(encoding="utf-8")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(tmp_path / "db", CONFIG_RECORDS)
    yield opened
    opened.close()


def _error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_document(text, "call.yaml")
    return caught.value


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_demo_document_loads_into_typed_records(demo_text: str) -> None:
    config = load_document(demo_text, "demo.yaml")
    assert [q.name for q in config.queues] == ["sales", "support"]
    assert config.queues[0].strategy is Strategy.LONGEST_IDLE
    menu = config.flows[0].nodes["menu"]
    assert isinstance(menu, MenuNode)
    assert menu.options == {"1": "sales", "2": "support"}
    assert isinstance(config.flows[0].nodes["sales"], QueueNode)
    assert config.agents[0].name == "张伟"


def test_typo_in_a_key_names_the_key_line_and_the_likely_intent(demo_text: str) -> None:
    text = demo_text.replace("    wrapup: 10\n", "    wrapupp: 10\n")
    error = _error(text)
    assert error.line == _line_of(text, "wrapupp")
    assert error.path == "queues[0].wrapupp"
    assert "unknown key 'wrapupp'; did you mean 'wrapup'?" in str(error)
    assert str(error).startswith(f"call.yaml:{error.line}: queues[0].wrapupp:")


def test_bad_value_names_what_is_allowed(demo_text: str) -> None:
    text = demo_text.replace("strategy: longest_idle", "strategy: longest")
    error = _error(text)
    assert error.line == _line_of(text, "strategy: longest")
    assert "must be one of 'longest_idle', 'round_robin'" in error.message

    text = demo_text.replace("ring_timeout: 20", "ring_timeout: 2", 1)
    assert "must be between 5 and 300, got 2" in _error(text).message

    text = demo_text.replace("ring_timeout: 20", "ring_timeout: yes", 1)
    assert "must be an integer, got a boolean True" in _error(text).message


def test_reference_to_a_missing_queue_is_named(demo_text: str) -> None:
    text = demo_text.replace("queue: support\n", "queue: suport\n")
    error = _error(text)
    assert error.path == "flows[0].nodes.support.queue"
    assert "no queue named 'suport' (defined: sales, support)" in error.message
    assert error.line == _line_of(text, "queue: suport")


def test_reference_to_a_missing_node_is_named(demo_text: str) -> None:
    text = demo_text.replace('"2": support', '"2": suport')
    error = _error(text)
    assert error.path == "flows[0].nodes.menu.options.2"
    assert "no node named 'suport'" in error.message


def test_reference_to_a_missing_prompt_is_named(demo_text: str) -> None:
    text = demo_text.replace("prompt: menu\n", "prompt: mneu\n")
    error = _error(text)
    assert error.path == "flows[0].nodes.menu.prompt"
    assert "no prompt named 'mneu' (defined: " in error.message
    assert error.line == _line_of(text, "prompt: mneu")

    text = demo_text.replace("invalid_prompt: invalid", "invalid_prompt: nope")
    assert _error(text).path == "flows[0].nodes.menu.invalid_prompt"

    text = demo_text.replace("    max_wait: 300\n", "    max_wait: 300\n    hold_music: radio\n")
    error = _error(text)
    assert error.path == "queues[0].hold_music"
    assert "no prompt named 'radio'" in error.message


def test_site_prompts_can_be_named_by_flows_and_queues(demo_text: str) -> None:
    text = demo_text.replace("prompt: closed\n", "prompt: holiday\n") + (
        "\nprompts:\n  - name: holiday\n    file: holiday-zh.wav\n    label: 节假日\n"
    )
    config = load_document(text, "demo.yaml")
    assert [p.name for p in config.prompts] == ["holiday"]


def test_schedule_time_zone_must_exist(demo_text: str) -> None:
    text = demo_text.replace(
        '    holidays: ["2026-10-01", "2026-10-02"]\n',
        '    holidays: ["2026-10-01", "2026-10-02"]\n    timezone: Asia/Shanghia\n',
    )
    error = _error(text)
    assert error.path == "schedules[0].timezone"
    assert "is not a time zone name such as Asia/Shanghai: 'Asia/Shanghia'" in error.message


def test_duplicate_names_and_duplicate_keys_are_refused(demo_text: str) -> None:
    text = demo_text.replace(
        "  - name: support\n    skill: support", "  - name: sales\n    skill: support"
    )
    assert "duplicate 'sales': queues[0] already has it" in _error(text).message

    text = demo_text.replace(
        "    ring_timeout: 20\n    wrapup: 10",
        "    ring_timeout: 20\n    ring_timeout: 30\n    wrapup: 10",
    )
    error = _error(text)
    assert "the key 'ring_timeout' appears twice" in error.message
    assert error.line == _line_of(text, "ring_timeout: 30")


def test_trunk_rules_are_checked(demo_text: str) -> None:
    text = demo_text.replace("    allow: [127.0.0.2/32]\n", "")
    assert "needs 'allow'" in _error(text).message
    text = demo_text.replace("allow: [127.0.0.2/32]", "allow: [192.0.2.300]")
    error = _error(text)
    assert error.path == "trunks[0].allow[0]"
    assert "must be an IP address or network" in error.message


def test_extensions_load_with_defaults_and_their_limits(demo_text: str) -> None:
    config = load_document(demo_text, "demo.yaml")
    assert [e.number for e in config.extensions] == ["1001", "1002", "1003"]
    first, _, third = config.extensions
    assert first.password == "phone-1001-secret"
    assert first.max_contacts == 3
    assert (first.pickup_group, third.pickup_group) == ("", "front-desk")
    assert first.codecs == [Codec.PCMA, Codec.PCMU]
    assert first.allows("203.0.113.9")
    assert third.allows("192.168.1.20")
    assert not third.allows("203.0.113.9")
    assert third.codecs == [Codec.G722, Codec.PCMA]


def test_agent_extension_must_be_a_configured_extension(demo_text: str) -> None:
    text = demo_text.replace('    extension: "1002"\n', '    extension: "1009"\n')
    error = _error(text)
    assert error.path == "agents[1].extension"
    assert "no extension named '1009' (defined: 1001, 1002, 1003)" in error.message
    assert error.line == _line_of(text, 'extension: "1009"')


def test_extension_rules_name_the_field(demo_text: str) -> None:
    text = demo_text.replace("password: phone-1002-secret", "password: short")
    error = _error(text)
    assert error.path == "extensions[1].password"
    assert "must have 8..128 items" in error.message
    text = demo_text.replace("networks: [192.168.0.0/16, 10.0.0.0/8]", "networks: [10.0.0.0/33]")
    error = _error(text)
    assert error.path == "extensions[2].networks[0]"
    assert "must be an IP address or network" in error.message
    text = demo_text.replace("    max_contacts: 2\n", "    max_contacts: 0\n")
    assert _error(text).path == "extensions[2].max_contacts"
    text = demo_text.replace("    pickup_group: front-desk\n", f"    pickup_group: {'g' * 33}\n")
    assert _error(text).path == "extensions[2].pickup_group"
    text = demo_text.replace('  - number: "1002"\n    display_name: 李娜', '  - number: "1001"\n')
    assert "duplicate '1001': extensions[0] already has it" in _error(text).message


def test_invalid_yaml_gives_the_line() -> None:
    error = _error("queues:\n  - name: a\n   bad: [\n")
    assert error.message.startswith("not valid YAML")
    assert error.line is not None


def test_empty_document_is_an_empty_configuration() -> None:
    assert load_document("", "x") == Configuration()


def test_import_then_export_round_trips(store: Store, demo_text: str) -> None:
    config = load_document(demo_text, "demo.yaml")
    written = import_configuration(store, config)
    assert written["queues"] == 2
    assert written["agents"] == 3
    assert written["extensions"] == 3
    exported = export_configuration(store)
    again = load_document(dump_document(exported), "export.yaml")
    assert again == exported
    assert exported.queues == config.queues
    assert exported.flows == config.flows
    assert exported.extensions == config.extensions


def test_passwords_are_stored_only_as_argon2_hashes(store: Store, demo_text: str) -> None:
    import_configuration(store, load_document(demo_text, "demo.yaml"))
    exported = export_configuration(store)
    admin = exported.users[0]
    assert admin.password is None
    assert PasswordHasher().verify(admin.password_hash, "change-me-now")
    assert "change-me-now" not in dump_document(exported)


def test_import_replaces_the_whole_configuration(store: Store, demo_text: str) -> None:
    import_configuration(store, load_document(demo_text, "demo.yaml"))
    smaller = load_document("skills:\n  - name: only\n", "small.yaml")
    import_configuration(store, smaller)
    exported = export_configuration(store)
    assert [s.name for s in exported.skills] == ["only"]
    assert exported.queues == []
    assert exported.agents == []


def test_routes_load_in_order_with_their_pattern_and_number_rewriting(demo_text: str) -> None:
    (route,) = load_document(demo_text, "demo.yaml").routes
    assert route.trunks == ["carrier", "gateway"]
    assert route.matches("013812345678")
    assert not route.matches("0")
    assert not route.matches("13812345678")
    assert route.number_sent("013812345678") == "13812345678"
    assert route.allows("1002")
    assert route.allows("ivr")


def test_dial_patterns_match_whole_numbers_by_their_classes() -> None:
    mobile = OutboundRoute("mobile", "1[3-9]XXXXXXXXX", ["t"], prepend="+86")
    assert mobile.matches("13812345678")
    assert not mobile.matches("12812345678")
    assert not mobile.matches("138123456789")
    assert mobile.number_sent("13812345678") == "+8613812345678"
    assert OutboundRoute("n", "N[135]Z.", ["t"]).matches("2310")
    assert not OutboundRoute("n", "N[135]Z.", ["t"]).matches("231")


def test_a_route_is_used_only_by_the_callers_it_names() -> None:
    nobody = OutboundRoute("r", "9.", ["t"])
    assert not nobody.allows("1001")
    assert not nobody.allows("ivr")
    some = OutboundRoute("r", "9.", ["t"], callers=["1001"])
    assert some.allows("1001")
    assert not some.allows("1002")
    assert not some.allows("ivr")
    everyone = OutboundRoute("r", "9.", ["t"], callers=["all"])
    assert everyone.allows("1002")
    assert not everyone.allows("ivr")


def test_a_route_naming_a_missing_trunk_is_refused_with_its_name_and_line(
    demo_text: str,
) -> None:
    text = demo_text.replace("trunks: [carrier, gateway]", "trunks: [carrier, gatewy]")
    error = _error(text)
    assert error.path == "routes[0].trunks[1]"
    assert "no trunk named 'gatewy' (defined: carrier, gateway)" in error.message
    assert error.line == _line_of(text, "trunks: [carrier, gatewy]")
    assert str(error).startswith(f"call.yaml:{error.line}: routes[0].trunks[1]: ")


def test_route_rules_name_the_key(demo_text: str) -> None:
    error = _error(demo_text.replace('pattern: "0."', 'pattern: "0?"'))
    assert error.path == "routes[0].pattern"
    assert "a dial pattern" in error.message
    error = _error(demo_text.replace("callers: [all, ivr]", 'callers: [all, "1009"]'))
    assert error.path == "routes[0].callers[1]"
    assert "no extension named '1009'" in error.message
    error = _error(demo_text.replace("strip: 1", "strip: 2"))
    assert error.path == "routes[0].strip"
    assert "nothing would be left to dial" in error.message


def test_routes_keep_their_order_through_the_store(store: Store, demo_text: str) -> None:
    config = load_document(demo_text, "demo.yaml")
    routes = [OutboundRoute(name, "9.", ["gateway"], strip=1) for name in ("zeta", "alpha", "mid")]
    import_configuration(store, dataclasses.replace(config, routes=routes))
    exported = export_configuration(store)
    assert [r.name for r in exported.routes] == ["zeta", "alpha", "mid"]
    assert exported.routes == routes


def test_a_store_from_before_routes_and_call_directions_opens_with_both(tmp_path: Path) -> None:
    # What an earlier Callbox wrote: no routes sub-database, call records of schema 1.
    old = {
        "id": "20261206181728-5e79a3cb", "started_us": 1, "ended_us": 2, "dialled": "4008001234",
        "caller": "13800138000", "outcome": "ivr", "hangup_side": "caller", "hangup_cause": 16,
    }  # fmt: skip
    env = lmdb.open(str(tmp_path / "db"), max_dbs=32, subdir=True)
    calls, meta = env.open_db(b"calls"), env.open_db(b"meta")
    with env.begin(write=True) as txn:
        txn.put(
            time_key(1, b"20261206181728-5e79a3cb"), msgpack.packb({"v": 1, "d": old}), db=calls
        )
        txn.put(b"schema:calls", msgpack.packb(1), db=meta)
    env.close()

    store = Store.open(tmp_path / "db", (*CONFIG_RECORDS, *CALL_LOG_RECORDS))
    try:
        (record,) = store.read_sync(lambda txn: list(txn.scan(CallRecord)))
        assert export_configuration(store).routes == []
    finally:
        store.close()
    assert (record.direction, record.route, record.dialled) == (
        CallDirection.INBOUND,
        None,
        "4008001234",
    )
