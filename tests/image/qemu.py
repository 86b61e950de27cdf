"""qemu machines for the image and ISO boot tests: start, watch the serial console, call.

A machine runs under TCG with user-mode networking (``restrict=on``: the guest
reaches nothing outside) and host forwards on 127.0.0.1 for HTTP and SIP over
TCP: with ``restrict=on`` slirp drops every UDP datagram the guest sends
except DHCP and TFTP, so the answers to a forwarded UDP request never come
back. The serial console is qemu's stdio: what the guest prints goes to a
log file, what a test types goes to the guest. qemu is killed by its PID when
the machine's context ends; failures carry the serial log's tail.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.sip.net import free_port
from tests.webadmin.signin import sign_in

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = Path(__file__).parent / "call_number.xml"
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
READY_MARKER = "CALLBOX READY"
DEMO_NUMBER = "4008001234"
BOOT_TIMEOUT_S = 900.0
"""TCG on a busy two-core machine: a boot takes a few minutes; this is the give-up point."""

needs_root = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="the image build needs root (mmdebstrap root mode); run make test as root",
)


def make(target: str) -> None:
    """Build ``target`` of the repository's Makefile (brings the image or ISO up to date)."""
    subprocess.run(["make", "-C", str(ROOT), target], check=True)


@dataclass
class Machine:
    """A running qemu: its serial console (read and typed) and the host ports forwarded to it."""

    process: subprocess.Popen[bytes]
    serial_log: Path
    http_port: int
    sip_port: int
    seen: int = field(default=0)
    """How far :meth:`wait_for` has read the console: later waits look only past it."""

    def console(self) -> str:
        """Everything the guest printed on its serial console so far."""
        return self.serial_log.read_text(errors="replace")

    def tail(self, lines: int = 60) -> str:
        """The serial log's last ``lines`` lines, for failure messages."""
        return "\n".join(self.console().splitlines()[-lines:])

    def wait_for(
        self, text: str, timeout_s: float = BOOT_TIMEOUT_S, *, whole_line: bool = False
    ) -> str:
        """Wait until ``text`` appears on the console past what was seen; the rest of its line
        (with ``whole_line``, only once that line has ended: the console is read as it is
        written, so a line may still be coming)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            console = self.console()
            found = console.find(text, self.seen)
            if found >= 0 and (not whole_line or console.find("\n", found) >= 0):
                end = console.find("\n", found)
                self.seen = found + len(text)
                return console[found + len(text) : end if end >= 0 else len(console)]
            if self.process.poll() is not None:
                status = self.process.returncode
                pytest.fail(f"qemu exited ({status}) before {text!r}:\n{self.tail()}")
            time.sleep(1)
        pytest.fail(f"no {text!r} on the serial console in {timeout_s} s:\n{self.tail()}")

    def type(self, keys: str) -> None:
        """Type ``keys`` on the serial console (``\\r`` is Enter)."""
        assert self.process.stdin is not None
        self.process.stdin.write(keys.encode())
        self.process.stdin.flush()

    def wait_for_poweroff(self, timeout_s: float = BOOT_TIMEOUT_S) -> None:
        """Wait until the guest powers off (qemu exits by itself, status 0)."""
        try:
            status = self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the guest did not power off in {timeout_s} s:\n{self.tail()}")
        assert status == 0, f"qemu exited with {status}:\n{self.tail()}"


@contextlib.contextmanager
def running(
    tmp_path: Path, firmware: str, disks: Sequence[Path] = (), cdrom: Path | None = None
) -> Iterator[Machine]:
    """Start qemu by ``firmware`` (``bios``, ``uefi``) with virtio ``disks`` (qcow2), ``cdrom``."""
    http_port, sip_port = free_port(), free_port()
    command = [
        "qemu-system-x86_64", "-accel", "tcg", "-m", "1024", "-smp", "2",
        "-display", "none", "-monitor", "none", "-serial", "stdio",
        "-netdev",
        f"user,id=lan,restrict=on,hostfwd=tcp:127.0.0.1:{http_port}-:8080,"
        f"hostfwd=tcp:127.0.0.1:{sip_port}-:5060",
        "-device", "virtio-net-pci,netdev=lan",
    ]  # fmt: skip
    for disk in disks:
        command += ["-drive", f"file={disk},format=qcow2,if=virtio"]
    if cdrom is not None:
        command += ["-drive", f"file={cdrom},format=raw,media=cdrom,readonly=on"]
    if firmware == "uefi":
        variables = tmp_path / "OVMF_VARS.fd"
        shutil.copyfile(OVMF_VARS, variables)
        command += [
            "-machine", "q35",
            "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
            "-drive", f"if=pflash,format=raw,unit=1,file={variables}",
        ]  # fmt: skip
    serial_log = tmp_path / "serial.log"
    with serial_log.open("wb") as serial, (tmp_path / "qemu.log").open("wb") as qemu_log:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=serial, stderr=qemu_log)
    try:
        yield Machine(process, serial_log, http_port, sip_port)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        process.wait()
        if process.stdin is not None:
            process.stdin.close()


@contextlib.contextmanager
def booted(image: Path, firmware: str, tmp_path: Path) -> Iterator[Machine]:
    """Boot a 4 GiB copy-on-write overlay of ``image`` with ``firmware`` until it is ready.

    The overlay leaves ``image`` untouched and is larger than it, so the first boot grows
    the root partition.
    """
    disk = tmp_path / "disk.qcow2"
    overlay = ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(image)]
    subprocess.run([*overlay, str(disk), "4G"], check=True)
    with running(tmp_path, firmware, disks=[disk]) as machine:
        machine.wait_for(READY_MARKER)
        yield machine


def _health(machine: Machine) -> dict[str, str]:
    url = f"http://127.0.0.1:{machine.http_port}/api/v1/health"
    with urllib.request.urlopen(url, timeout=30) as response:
        body: dict[str, str] = json.load(response)
    return body


def _run(machine: Machine, *command: str, cwd: Path) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=180)
    output = result.stdout + result.stderr
    if result.returncode != 0:
        logs = "".join(p.read_text(errors="replace")[-3000:] for p in cwd.glob("*_errors.log"))
        pytest.fail(
            f"{command[0]} failed ({result.returncode}):\n{output[-3000:]}\n{logs}\n"
            f"serial log:\n{machine.tail()}"
        )
    return output


def check_first_boot_grew_root(machine: Machine) -> None:
    """The first boot grew the root filesystem to the 4 GiB disk and printed the admin password."""
    console = machine.console()
    grown = re.search(r"root filesystem is ([0-9.]+)G", console)
    assert grown, f"first boot did not report the root's size:\n{machine.tail()}"
    assert float(grown.group(1)) > 3.0, f"root not grown to the 4 GiB disk:\n{machine.tail()}"
    # The console banner prints it after the ready marker: its line may still be coming.
    password = machine.wait_for("first login: user admin, one-time password ", 60, whole_line=True)
    assert re.fullmatch(r"\S{8,}\r?", password), machine.tail()


def check_appliance_answers(machine: Machine, tmp_path: Path) -> None:
    """The web says web and switch are up, OPTIONS gets 200, the IVR answers the demo number."""
    health = _health(machine)
    assert (health["web"], health["switch"]) == ("ok", "ok"), health

    options = _run(
        machine, "sipsak", "-vv", "-E", "tcp", "-H", "127.0.0.1", "-l", str(free_port()),
        "-s", f"sip:ping@127.0.0.1:{machine.sip_port}", cwd=tmp_path,
    )  # fmt: skip
    assert "SIP/2.0 200" in options

    _run(
        machine, "sipp", f"127.0.0.1:{machine.sip_port}", "-sf", str(SCENARIO), "-s", DEMO_NUMBER,
        "-t", "t1", "-m", "1", "-i", "127.0.0.1", "-p", str(free_port()), "-nostdin",
        "-timeout", "120", "-timeout_error", "-trace_err", cwd=tmp_path,
    )  # fmt: skip


def check_first_web_login_asks_for_a_new_password(machine: Machine) -> None:
    """Signing in with the one-time password the console showed leads to replacing it."""
    one_time = re.search(r"one-time password (\S+)", machine.console())
    assert one_time, machine.tail()
    first = sign_in(f"http://127.0.0.1:{machine.http_port}", "admin", one_time.group(1))
    assert first.url.endswith("/password"), first.page
    assert "Choose your new password" in first.page


def check_disk_boots_and_answers(image: Path, firmware: str, tmp_path: Path) -> None:
    """``image`` boots by ``firmware``, its first boot grows the root, the appliance answers,
    and the first web login asks for a new password."""
    with booted(image, firmware, tmp_path) as machine:
        check_first_boot_grew_root(machine)
        check_appliance_answers(machine, tmp_path)
        check_first_web_login_asks_for_a_new_password(machine)
