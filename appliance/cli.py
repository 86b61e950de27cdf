"""The ``callbox`` command: run the appliance, look at it, move its configuration."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from appliance import __version__
from appliance.schema import ConfigError
from appliance.settings import DEFAULT_CONFIG_FILE, Settings, describe_settings, load_settings

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3

DESCRIPTION = """\
Callbox: an on-premises call-center appliance.

Start it with 'callbox run' (or 'make run' from a source checkout): the switch
and the web UI start in the foreground on embedded defaults, with data in
./var. Check it from another shell with 'callbox status'. Configure the call
center (trunks, numbers, IVR flows, queues, agents) by editing the YAML from
'callbox config export' and loading it with 'callbox config import FILE'.
"""

SETTINGS_HELP = f"""\
settings come from built-in defaults, then a TOML file (--config FILE, else
$CALLBOX_CONFIG, else {DEFAULT_CONFIG_FILE} if it exists), then environment
variables CALLBOX_<SECTION>_<KEY> such as CALLBOX_WEB_PORT=8081 or
CALLBOX_DATA_DIR=/srv/callbox. 'callbox settings' prints the result.
"""


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config)


def _child_args(args: argparse.Namespace) -> list[str]:
    return ["--config", str(args.config)] if args.config else []


def cmd_run(args: argparse.Namespace) -> int:
    from appliance.config import open_store
    from appliance.runner import supervise
    from appliance.store import StoreError
    from appliance.webadmin.accounts import pending_first_admin_password
    from appliance.webadmin.sessions import WebSession

    settings = _settings(args)
    try:
        store = open_store(settings, (WebSession,))
        try:
            one_time = pending_first_admin_password(store, settings.data_path)
        finally:
            store.close()
    except StoreError as exc:
        print(f"callbox run: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return asyncio.run(supervise(settings, _child_args(args), one_time_password=one_time))


def _serve(args: argparse.Namespace, name: str) -> int:
    from appliance.service import StartupError
    from appliance.store import StoreError
    from hw.systemd import setup_logging

    settings = _settings(args)
    setup_logging(f"callbox-{name}", settings.log.level.value)
    if name == "switch":
        from appliance.switch import serve
    else:
        from appliance.webadmin import serve
    try:
        asyncio.run(serve(settings))
    except (StartupError, StoreError) as exc:
        print(f"callbox {name}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def cmd_switch(args: argparse.Namespace) -> int:
    return _serve(args, "switch")


def cmd_web(args: argparse.Namespace) -> int:
    return _serve(args, "web")


def format_status(status: dict[str, Any]) -> str:
    """The human-readable form of the switch's status."""
    minutes, seconds = divmod(int(status["uptime_s"]), 60)
    hours, minutes = divmod(minutes, 60)
    lines = [
        f"Callbox {status['version']}: running (switch pid {status['pid']}, "
        f"up {hours}h{minutes:02d}m{seconds:02d}s)",
        f"data          {status['data_dir']}",
    ]
    for name, where in status["listeners"].items():
        lines.append(f"{name:<13} {where or 'not available in this build'}")
    media = status["media_core"]
    libraries = ", ".join(f"{k} {v}" for k, v in media["libraries"].items())
    lines.append(
        f"media core    {media['implementation']}" + (f" ({libraries})" if libraries else "")
    )
    lines.append(f"media engine  {media['workers']} workers, RTP ports {media['rtp_ports']}")
    records = status["store"]["records"]
    lines.append("configured    " + ", ".join(f"{n} {k}" for k, n in records.items()))
    registrations = status["registrations"]
    extensions = len({r["extension"] for r in registrations})
    lines.append(f"registered    {extensions} extensions, {len(registrations)} contacts")
    for r in registrations:
        nat = ", behind NAT" if r["nat"] else ""
        lines.append(
            f"extension     {r['extension']}: {r['contact']} from {r['source']}{nat}, "
            f"expires in {r['expires_in']} s"
        )
    lines.extend(_trunk_line(trunk) for trunk in status.get("trunks", []))
    for source, seconds in status["banned"].items():
        lines.append(f"banned        {source} for {seconds} s more")
    calls = status["calls"]
    lines.append(f"calls         {len(calls)} live")
    lines.extend(
        _table(
            ("id", "from", "to", "trunk", "state", "codec", "time", "held", "legs"),
            [
                (
                    c["id"], c["from"], c["to"], c.get("trunk"), _call_state(c), c["codec"],
                    f"{c['seconds']} s", "held" if c["held"] else "", _legs(c["legs"]),
                )
                for c in calls
            ],
        )
    )  # fmt: skip
    agents = status["agents"]
    logged_in = sum(1 for a in agents if a["state"] != "logged_out")
    lines.append(f"agents        {len(agents)} configured, {logged_in} logged in")
    now = time.time()
    lines.extend(
        _table(
            ("agent", "name", "extension", "state", "reason", "since", "call"),
            [
                (
                    a["number"], a["name"], a["extension"], a["state"], a["reason"],
                    _since(a["since"], now), a["call_id"],
                )
                for a in agents
            ],
        )
    )  # fmt: skip
    queues = status["queues"]
    lines.append(f"queues        {len(queues)} configured")
    lines.extend(
        _table(
            ("queue", "skill", "strategy", "waiting", "longest wait", "agents ready",
             "answered", "abandoned", "timed out"),
            [
                (
                    q["name"], q["skill"], q["strategy"], q["waiting"],
                    None if q["longest_wait_s"] is None else f"{q['longest_wait_s']} s",
                    f"{len(q['agents']['ready'])} of {sum(map(len, q['agents'].values()))}",
                    q["counts"]["answered"], q["counts"]["abandoned"], q["counts"]["timed_out"],
                )
                for q in queues
            ],
        )
    )  # fmt: skip
    return "\n".join(lines)


def _width(text: str) -> int:
    """Columns ``text`` takes in a terminal: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _table(headings: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """Rows under their headings, in aligned columns indented by two ("-" for no value)."""
    if not rows:
        return []
    cells = [list(headings)] + [["-" if v is None or v == "" else str(v) for v in r] for r in rows]
    widths = [max(_width(row[i]) for row in cells) for i in range(len(headings))]
    return [
        "  "
        + "  ".join(
            cell + " " * (width - _width(cell)) for cell, width in zip(row, widths, strict=True)
        ).rstrip()
        for row in cells
    ]


def _call_state(call: dict[str, Any]) -> str:
    """A call's state, with the agent's extension when one rings or talks."""
    agent = call.get("agent")
    return f"{call['state']} ({agent})" if agent else str(call["state"])


def _legs(legs: dict[str, dict[str, Any]]) -> str:
    return ", ".join(
        f"{side} {leg['codec']} port {leg['port']} rx {leg['received']} tx {leg['sent']}"
        for side, leg in legs.items()
    )


def _since(since: float | None, now: float) -> str | None:
    """When, and how long ago: "18:02:11 (4m05s)"."""
    if since is None:
        return None
    minutes, seconds = divmod(max(0, int(now - since)), 60)
    hours, minutes = divmod(minutes, 60)
    ago = f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"
    return f"{time.strftime('%H:%M:%S', time.localtime(since))} ({ago})"


def _trunk_line(trunk: dict[str, Any]) -> str:
    """One trunk in ``callbox status``: registration, OPTIONS, calls, last change."""
    parts = []
    registration = trunk["registration"]
    if registration is not None:
        text = f"registration {registration['state']}"
        if registration["expires_in"] is not None:
            text += f", expires in {registration['expires_in']} s"
        if registration["retry_in"] is not None:
            text += f", retry in {registration['retry_in']} s ({registration['reason']})"
        parts.append(text)
    options = trunk["options"]
    if options is not None:
        parts.append(f"OPTIONS {options['state']} (every {options['interval_s']} s)")
    parts.append(f"{trunk['calls_in']} calls in, {trunk['calls_out']} out")
    if trunk["last_change"] is not None:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(trunk["last_change"]))
        parts.append(f"last change {when}: {trunk['last_change_reason']}")
    return f"trunk         {trunk['name']} ({trunk['mode']}, {trunk['peer']}): " + "; ".join(parts)


def cmd_status(args: argparse.Namespace) -> int:
    from appliance.webadmin.switch_client import SwitchUnavailable, fetch_status

    settings = _settings(args)
    try:
        status = asyncio.run(fetch_status(settings.control_socket))
    except SwitchUnavailable as exc:
        print(f"Callbox is not running: {exc}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    print(json.dumps(status, indent=2) if args.json else format_status(status))
    return EXIT_OK


AGENT_ACTIONS = {"login": "login", "logout": "logout", "ready": "ready", "notready": "not_ready"}
"""``callbox agent`` actions and the control API routes they take."""


def _agent_number(text: str) -> str:
    """An agent number as argparse takes it: digits only, so it is safe in the API's path."""
    if not text.isascii() or not text.isdigit():
        raise argparse.ArgumentTypeError(f"an agent number is digits, got {text!r}")
    return text


def cmd_agent(args: argparse.Namespace) -> int:
    from appliance.webadmin.switch_client import SwitchRefused, SwitchUnavailable, request_switch

    settings = _settings(args)
    path = f"/v1/agents/{args.number}/{AGENT_ACTIONS[args.action]}"
    body = None if args.reason is None else {"reason": args.reason}
    try:
        agent = asyncio.run(request_switch(settings.control_socket, "POST", path, body))
    except SwitchUnavailable as exc:
        print(f"Callbox is not running: {exc}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    except SwitchRefused as exc:
        print(f"callbox agent {args.action}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    reason = f" ({agent['reason']})" if agent["reason"] else ""
    print(f"agent {agent['number']} {agent['name']}: {agent['state']}{reason}")
    return EXIT_OK


def cmd_config_export(args: argparse.Namespace) -> int:
    from appliance.config import dump_document, export_configuration, open_store

    store = open_store(_settings(args))
    try:
        text = dump_document(export_configuration(store))
    finally:
        store.close()
    if args.file in (None, "-"):
        sys.stdout.write(text)
    else:
        Path(args.file).write_text(text, encoding="utf-8")
        print(f"configuration written to {args.file}")
    return EXIT_OK


def cmd_config_import(args: argparse.Namespace) -> int:
    from appliance.config import import_configuration, load_document, open_store

    source = "<stdin>" if args.file == "-" else args.file
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    except OSError as exc:
        print(f"callbox config import: cannot read {source}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    except UnicodeDecodeError as exc:
        print(f"callbox config import: {source} is not UTF-8 text: {exc.reason}", file=sys.stderr)
        return EXIT_USAGE
    # Validate everything before the store is touched, so a bad file changes nothing.
    configuration = load_document(text, source)
    store = open_store(_settings(args))
    try:
        written = import_configuration(store, configuration)
    finally:
        store.close()
    summary = ", ".join(f"{n} {kind}" for kind, n in written.items())
    print(f"imported {source}: {summary}")
    return EXIT_OK


def _read_new_password(username: str) -> str | None:
    """The new password typed twice (hidden at a terminal, else two lines); None if they differ."""
    import getpass

    prompts = (f"new password for {username}: ", "again: ")
    if sys.stdin.isatty():
        first, second = (getpass.getpass(prompt) for prompt in prompts)
    else:
        first, second = (sys.stdin.readline().rstrip("\n") for _ in prompts)
    return first if first == second else None


def cmd_user_passwd(args: argparse.Namespace) -> int:
    from appliance.config import open_store
    from appliance.webadmin.accounts import (
        PasswordRejected,
        UnknownUser,
        check_new_password,
        generate_one_time_password,
        set_password,
    )
    from appliance.webadmin.sessions import WebSession

    settings = _settings(args)
    if args.one_time:
        password = generate_one_time_password()
    else:
        typed = _read_new_password(args.name)
        if typed is None:
            print("callbox user passwd: the two entries differ; nothing changed", file=sys.stderr)
            return EXIT_USAGE
        try:
            check_new_password(typed, typed, "")
        except PasswordRejected as exc:
            print(f"callbox user passwd: {exc}; nothing changed", file=sys.stderr)
            return EXIT_USAGE
        password = typed
    store = open_store(settings, (WebSession,))
    try:
        set_password(store, settings.data_path, args.name, password, one_time=args.one_time)
    except UnknownUser as exc:
        print(f"callbox user passwd: {exc}; nothing changed", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        store.close()
    if args.one_time:
        print(f"one-time password for {args.name}: {password}")
        print("it must be replaced at the next web sign-in; the user's sessions have ended")
    else:
        print(f"password of {args.name} changed; the user's sessions have ended")
    return EXIT_OK


def format_calls(records: Sequence[Any]) -> str:
    """Call records as a table, oldest first (``callbox calls``)."""
    rows = []
    for record in records:
        mos = "/".join(f"{leg.mos:.1f}" for leg in record.legs) or "-"
        loss = "/".join(f"{leg.loss_percent:.1f}" for leg in record.legs) or "-"
        rows.append(
            [
                time.strftime("%m-%d %H:%M:%S", time.localtime(record.started_us / 1e6)),
                record.id,
                record.caller or "-",
                record.dialled,
                record.trunk or "-",
                record.outcome.value,
                record.queue or "-",
                "-" if record.wait_s is None else f"{record.wait_s:.0f} s",
                record.agent or "-",
                "-" if record.talk_s is None else f"{record.talk_s:.0f} s",
                f"{record.hangup_side} ({record.hangup_cause})",
                mos,
                loss,
                record.recording or "-",
                record.direction.value,
            ]
        )
    headings = (
        "started", "id", "caller", "dialled", "trunk", "outcome", "queue", "wait", "agent",
        "talk", "hung up by (cause)", "MOS", "loss %", "recording", "direction",
    )  # fmt: skip
    if not rows:
        return "no calls in that time"
    return "\n".join(_table(headings, rows))


def cmd_calls(args: argparse.Namespace) -> int:
    from appliance.calllog.records import CallRecord, microseconds
    from appliance.config import open_store
    from appliance.store import time_key

    now = time.time()
    start = time_key(microseconds(max(0.0, now - args.hours * 3600)))
    store = open_store(_settings(args))
    try:
        records = store.read_sync(lambda txn: list(txn.scan(CallRecord, start)))
    finally:
        store.close()
    records = records[-args.last :]
    if args.json:
        from appliance.schema import dump

        print(json.dumps([dump(record) for record in records], indent=2, ensure_ascii=False))
    else:
        print(format_calls(records))
    return EXIT_OK


def cmd_backup(args: argparse.Namespace) -> int:
    from appliance.config import open_store

    store = open_store(_settings(args))
    try:
        store.backup(Path(args.file))
    finally:
        store.close()
    print(f"backup written to {args.file} (an LMDB file; open with mdb_stat -n {args.file})")
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    """``callbox bench capacity``: the whole-box capacity benchmark of a source checkout
    (``benchmarks/callcenter_load.py``; it needs SIPp and the checkout's ``build/loadgen``)."""
    checkout = Path(__file__).resolve().parent.parent
    if not (checkout / "benchmarks" / "callcenter_load.py").exists():
        print(
            "callbox bench: needs a source checkout (benchmarks/ is not installed)", file=sys.stderr
        )
        return EXIT_USAGE
    if str(checkout) not in sys.path:
        sys.path.insert(0, str(checkout))
    from benchmarks.callcenter_load import main as capacity

    return capacity(list(args.options))


def cmd_prompts(args: argparse.Namespace) -> int:
    from appliance.ivr.prompts import LANGUAGES, PromptGenerationError, generate_prompts

    root = _settings(args).prompts_path
    for lang in [args.lang] if args.lang else LANGUAGES:
        try:
            made = generate_prompts(root, lang, force=args.force)
        except PromptGenerationError as exc:
            print(f"callbox prompts: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        print(
            f"{lang}: {len(made)} prompts generated in {root / lang}"
            + (f" ({', '.join(made)})" if made else " (all up to date)")
        )
    return EXIT_OK


def cmd_settings(args: argparse.Namespace) -> int:
    print(yaml.safe_dump(describe_settings(_settings(args)), sort_keys=False).rstrip())
    return EXIT_OK


def cmd_version(args: argparse.Namespace) -> int:
    import core

    print(f"callbox {__version__}")
    print(f"media core: {core.IMPLEMENTATION}")
    for library, version in core.library_versions().items():
        print(f"  {library} {version}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``callbox`` (also used to generate the README's usage)."""
    parser = argparse.ArgumentParser(
        prog="callbox",
        description=DESCRIPTION,
        epilog=SETTINGS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config", type=Path, metavar="FILE", help="settings file (TOML); see below"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(
        name: str, handler: Callable[[argparse.Namespace], int], text: str
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text)
        sub.set_defaults(handler=handler)
        return sub

    add("run", cmd_run, "start the switch and the web UI in the foreground (Ctrl-C stops)")
    status = add(
        "status", cmd_status, "show the running appliance: listeners, calls, agents, queues"
    )
    status.add_argument("--json", action="store_true", help="print the raw status as JSON")
    agent = add("agent", cmd_agent, "log an agent in or out, or make them ready or not ready")
    agent.add_argument("action", choices=list(AGENT_ACTIONS))
    agent.add_argument("number", type=_agent_number, help="the agent's number (工号)")
    agent.add_argument("--reason", help="why the agent is not ready (notready needs one)")
    calls = add(
        "calls", cmd_calls, "list the latest call records (what each call did, its quality)"
    )
    calls.add_argument("--hours", type=float, default=24.0, help="how far back (default: 24)")
    calls.add_argument("--last", type=int, default=20, help="at most this many (default: 20)")
    calls.add_argument("--json", action="store_true", help="print the records as JSON")
    config = add("config", lambda a: EXIT_USAGE, "export or import the call-center configuration")
    config_commands = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    export = config_commands.add_parser(
        "export", help="write the configuration as YAML (to FILE or standard output)"
    )
    export.add_argument("file", nargs="?", metavar="FILE")
    export.set_defaults(handler=cmd_config_export)
    imp = config_commands.add_parser(
        "import",
        help="replace the configuration with a YAML file ('-' reads standard input); "
        "a file with any error changes nothing",
    )
    imp.add_argument("file", metavar="FILE")
    imp.set_defaults(handler=cmd_config_import)
    user = add("user", lambda a: EXIT_USAGE, "manage web users (a locked-out admin's password)")
    user_commands = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    passwd = user_commands.add_parser(
        "passwd",
        help="set a web user's password: typed twice, or --one-time to print a new one-time "
        "password that must be replaced at the next sign-in; ends the user's web sessions",
    )
    passwd.add_argument("name", metavar="NAME", help="the web user's username")
    passwd.add_argument(
        "--one-time", action="store_true", help="generate a one-time password and print it"
    )
    passwd.set_defaults(handler=cmd_user_passwd)
    backup = add("backup", cmd_backup, "write a compacted copy of the live database to FILE")
    backup.add_argument("file", metavar="FILE")
    prompts = add(
        "prompts", cmd_prompts, "generate the built-in prompts (espeak-ng, sox) that are missing"
    )
    prompts.add_argument("--lang", choices=["zh", "en"], help="only this language (default: all)")
    prompts.add_argument("--force", action="store_true", help="regenerate even the current ones")
    bench = add(
        "bench",
        cmd_bench,
        "measure the box: 'capacity' ramps concurrent calls through trunk, queue and agents "
        "(callbox bench capacity --help)",
    )
    bench.add_argument("benchmark", choices=["capacity"])
    bench.add_argument("options", nargs=argparse.REMAINDER, help="the benchmark's options")
    add("settings", cmd_settings, "print the effective settings (after file and environment)")
    add("version", cmd_version, "print the version and the media core's libraries")
    add("switch", cmd_switch, "run only the switch process (what callbox-switch.service runs)")
    add("web", cmd_web, "run only the web process (what callbox-web.service runs)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``callbox`` console script."""
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ConfigError as exc:
        print(f"callbox: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_FAILURE
