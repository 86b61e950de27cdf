"""The appliance as a user starts it: `callbox run`, `callbox status`, Ctrl-C, the web page."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.webadmin.signin import sign_in

DEMO = Path(__file__).parents[1] / "examples" / "demo.yaml"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Appliance:
    data: Path
    web_port: int
    env: dict[str, str]
    banner: str = ""
    """What the latest ``start`` printed up to its banner's last line."""

    def callbox(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "appliance", *args],
            env=self.env,
            capture_output=True,
            text=True,
            input=stdin,
            timeout=60,
            check=False,
        )

    def run_to_exit(self, **env: str) -> subprocess.CompletedProcess[str]:
        """`callbox run` expected to exit by itself (a start-up failure)."""
        return subprocess.run(
            [sys.executable, "-m", "appliance", "run"],
            env=dict(self.env, **env),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def start(self) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "appliance", "run"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("Status: callbox status"):
                self.banner = "".join(lines)
                return process
        process.wait(10)
        pytest.fail("callbox run did not come up:\n" + "".join(lines))

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}{path}", timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()


@pytest.fixture
def appliance(tmp_path: Path) -> Appliance:
    port = _free_port()
    env = dict(
        os.environ,
        CALLBOX_DATA_DIR=str(tmp_path / "var"),
        CALLBOX_WEB_HOST="127.0.0.1",
        CALLBOX_WEB_PORT=str(port),
        # The switch listens for SIP now: keep it off 5060 and the outside world.
        CALLBOX_SIP_HOST="127.0.0.1",
        CALLBOX_SIP_PORT=str(_free_port()),
    )
    env.pop("LD_PRELOAD", None)
    return Appliance(tmp_path / "var", port, env)


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=30)
    return out


def test_run_status_web_and_ctrl_c(appliance: Appliance) -> None:
    imported = appliance.callbox("config", "import", str(DEMO))
    assert imported.returncode == 0, imported.stderr
    process = appliance.start()
    try:
        status = appliance.callbox("status")
        assert status.returncode == 0, status.stderr
        assert "Callbox 0.1.0: running" in status.stdout
        assert f"unix:{appliance.data / 'run' / 'switch.sock'}" in status.stdout
        assert re.search(
            r"^  sales +sales +longest_idle +0 +- +0 of 2 +0 +0 +0$", status.stdout, re.M
        )
        assert "agents        3 configured, 0 logged in" in status.stdout

        raw = json.loads(appliance.callbox("status", "--json").stdout)
        assert raw["store"]["records"]["queues"] == 2
        assert raw["media_core"]["implementation"] == "native"
        assert raw["media_core"]["workers"] == (os.cpu_count() or 1)
        assert "media engine  " in status.stdout
        assert "RTP ports 20000-29999" in status.stdout

        code, body = appliance.get("/api/v1/health")
        assert code == 200
        assert json.loads(body)["switch"] == "ok"
        code, page = appliance.get("/")
        assert code == 200
        assert "<h1>登录 Callbox</h1>" in page  # signed out: the sign-in page, in zh by default
        page = sign_in(f"http://127.0.0.1:{appliance.web_port}", "admin", "change-me-now").page
        assert "<h1>Callbox 0.1.0</h1>" in page
        assert "support" in page
    finally:
        out = _stop(process)
    assert process.returncode == 0, out
    assert "Stopping Callbox" in out
    assert not (appliance.data / "run" / "switch.sock").exists()
    after = appliance.callbox("status")
    assert after.returncode == 3
    assert "Callbox is not running" in after.stderr


def test_a_fresh_run_makes_the_admin_with_a_one_time_password_the_web_asks_to_replace(
    appliance: Appliance,
) -> None:
    process = appliance.start()
    try:
        shown = re.search(
            r"^  first sign-in user admin, one-time password (\S+)", appliance.banner, re.M
        )
        assert shown, appliance.banner
        first = sign_in(f"http://127.0.0.1:{appliance.web_port}", "admin", shown.group(1))
        assert first.url.endswith("/password"), first.page
        assert "Choose your new password" in first.page
    finally:
        _stop(process)
    again = appliance.start()  # not replaced yet: still shown, not made anew
    _stop(again)
    assert f"one-time password {shown.group(1)} " in appliance.banner
    # An imported configuration brings its own users: nothing one-time is left to show.
    imported = appliance.callbox("config", "import", str(DEMO))
    assert imported.returncode == 0, imported.stderr
    third = appliance.start()
    _stop(third)
    assert "first sign-in" not in appliance.banner
    assert not (appliance.data / "admin-one-time-password").exists()


def test_second_run_starts_again_on_the_same_data(appliance: Appliance) -> None:
    first = appliance.start()
    _stop(first)
    second = appliance.start()
    try:
        assert appliance.callbox("status").returncode == 0
    finally:
        _stop(second)
    assert second.returncode == 0


def test_run_fails_clearly_when_the_web_port_is_taken(appliance: Appliance) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", appliance.web_port))
        blocker.listen()
        result = appliance.run_to_exit()
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{appliance.web_port} for the web UI" in result.stderr
    assert "the web process could not start" in result.stdout
    assert not (appliance.data / "run" / "switch.sock").exists()


def test_a_second_appliance_on_the_same_data_is_refused(appliance: Appliance) -> None:
    process = appliance.start()
    try:
        result = appliance.run_to_exit(CALLBOX_WEB_PORT=str(_free_port()))
        assert result.returncode == 1
        assert "another Callbox switch is already running" in result.stderr
        assert appliance.callbox("status").returncode == 0
    finally:
        _stop(process)


def test_import_of_a_file_with_a_typo_fails_and_changes_nothing(
    appliance: Appliance, tmp_path: Path
) -> None:
    assert appliance.callbox("config", "import", str(DEMO)).returncode == 0
    before = appliance.callbox("config", "export").stdout
    broken = tmp_path / "broken.yaml"
    text = DEMO.read_text(encoding="utf-8").replace(
        "ring_timeout: 20\n    wrapup: 30", "ring_timeout: 20\n    wrap_up: 30"
    )
    broken.write_text(text, encoding="utf-8")
    line = next(i for i, s in enumerate(text.splitlines(), 1) if "wrap_up" in s)

    result = appliance.callbox("config", "import", str(broken))
    assert result.returncode == 2
    assert f"{broken}:{line}: queues[1].wrap_up: unknown key 'wrap_up'; did you mean 'wrapup'?" in (
        result.stderr
    )
    assert appliance.callbox("config", "export").stdout == before


def test_export_import_backup_from_the_command_line(appliance: Appliance, tmp_path: Path) -> None:
    assert appliance.callbox("config", "import", "-", stdin=DEMO.read_text("utf-8")).returncode == 0
    exported = tmp_path / "export.yaml"
    assert appliance.callbox("config", "export", str(exported)).returncode == 0
    assert "queues:" in exported.read_text("utf-8")
    backup = tmp_path / "callbox.backup"
    result = appliance.callbox("backup", str(backup))
    assert result.returncode == 0, result.stderr
    assert backup.is_file()
    assert backup.stat().st_size > 0


def test_version_and_help_tell_a_new_user_what_to_do(appliance: Appliance) -> None:
    version = appliance.callbox("version")
    assert version.returncode == 0
    assert version.stdout.startswith("callbox 0.1.0\nmedia core: native\n")
    help_text = appliance.callbox("--help").stdout
    for command in ("run", "status", "config", "backup", "version", "CALLBOX_WEB_PORT"):
        assert command in help_text


def test_startup_stops_on_a_bad_setting(appliance: Appliance) -> None:
    result = appliance.run_to_exit(CALLBOX_WEB_PORT="http")
    assert result.returncode == 2
    assert "CALLBOX_WEB_PORT: must be an integer, got 'http'" in result.stderr


def test_banner_comes_only_when_both_processes_serve(appliance: Appliance) -> None:
    """The banner is printed after both children said READY=1 (sd_notify): they serve."""
    process = appliance.start()
    try:
        code, _ = appliance.get("/api/v1/health")
        assert code == 200
        assert (appliance.data / "run" / "switch.sock").is_socket()
    finally:
        _stop(process)
