"""The appliance image boots under qemu (TCG) by BIOS and by UEFI and answers.

``make image`` builds ``image/build/callbox.qcow2`` (needs root). Each test
boots a copy-on-write overlay of it, grown to 4 GiB so the first boot's
partition growth runs, with user-mode networking (``restrict=on``: the guest
reaches nothing outside) and host forwards on 127.0.0.1 for HTTP and SIP
over TCP: with ``restrict=on`` slirp drops every UDP datagram the guest
sends except DHCP and TFTP, so the answers to a forwarded UDP request never
come back. It waits for the console's ``CALLBOX READY`` line on the serial
log, then checks from the host: the root filesystem filled the disk, the web
health check says web and switch are up, sipsak's OPTIONS gets 200, and
SIPp's call to the demo number 4008001234 is answered by the IVR. On a
failure the serial log's tail is in the message; qemu is killed by its PID.
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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.sip.net import free_port
from tests.webadmin.signin import sign_in

ROOT = Path(__file__).resolve().parents[2]
IMAGE = ROOT / "image" / "build" / "callbox.qcow2"
SCENARIO = Path(__file__).parent / "call_number.xml"
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
READY_MARKER = "CALLBOX READY"
DEMO_NUMBER = "4008001234"
BOOT_TIMEOUT_S = 900.0
"""TCG on a busy two-core machine: a boot takes a few minutes; this is the give-up point."""

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(3600),
    pytest.mark.skipif(
        os.geteuid() != 0,
        reason="the image build needs root (mmdebstrap root mode); run make test as root",
    ),
]


@pytest.fixture(scope="module")
def image() -> Path:
    """The image, built (or brought up to date) by ``make image``."""
    subprocess.run(["make", "-C", str(ROOT), "image"], check=True)
    return IMAGE


@dataclass
class Guest:
    """A booted image: its serial log and the host ports forwarded to its web UI and SIP."""

    serial_log: Path
    http_port: int
    sip_port: int

    def console(self) -> str:
        """Everything the guest printed on its serial console so far."""
        return self.serial_log.read_text(errors="replace")

    def tail(self, lines: int = 60) -> str:
        """The serial log's last ``lines`` lines, for failure messages."""
        return "\n".join(self.console().splitlines()[-lines:])


def _wait_for_marker(process: subprocess.Popen[bytes], guest: Guest) -> None:
    deadline = time.monotonic() + BOOT_TIMEOUT_S
    while time.monotonic() < deadline:
        if READY_MARKER in guest.console():
            return
        if process.poll() is not None:
            pytest.fail(f"qemu exited ({process.returncode}) early:\n{guest.tail()}")
        time.sleep(2)
    pytest.fail(f"no {READY_MARKER!r} on the serial console in {BOOT_TIMEOUT_S} s:\n{guest.tail()}")


@contextlib.contextmanager
def booted(image: Path, firmware: str, tmp_path: Path) -> Iterator[Guest]:
    """Boot an overlay of ``image`` with ``firmware`` (``bios`` or ``uefi``) until it is ready."""
    disk = tmp_path / "disk.qcow2"
    overlay = ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(image)]
    subprocess.run([*overlay, str(disk), "4G"], check=True)
    guest = Guest(tmp_path / "serial.log", free_port(), free_port())
    command = [
        "qemu-system-x86_64", "-accel", "tcg", "-m", "1024", "-smp", "2",
        "-display", "none", "-monitor", "none", "-serial", f"file:{guest.serial_log}",
        "-drive", f"file={disk},format=qcow2,if=virtio",
        "-netdev",
        f"user,id=lan,restrict=on,hostfwd=tcp:127.0.0.1:{guest.http_port}-:8080,"
        f"hostfwd=tcp:127.0.0.1:{guest.sip_port}-:5060",
        "-device", "virtio-net-pci,netdev=lan",
    ]  # fmt: skip
    if firmware == "uefi":
        variables = tmp_path / "OVMF_VARS.fd"
        shutil.copyfile(OVMF_VARS, variables)
        command += [
            "-machine", "q35",
            "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
            "-drive", f"if=pflash,format=raw,unit=1,file={variables}",
        ]  # fmt: skip
    guest.serial_log.touch()
    with (tmp_path / "qemu.log").open("wb") as qemu_log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stderr=qemu_log)
        try:
            _wait_for_marker(process, guest)
            yield guest
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
            process.wait()


def _health(guest: Guest) -> dict[str, str]:
    url = f"http://127.0.0.1:{guest.http_port}/api/v1/health"
    with urllib.request.urlopen(url, timeout=30) as response:
        body: dict[str, str] = json.load(response)
    return body


def _run(guest: Guest, *command: str, cwd: Path) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=180)
    output = result.stdout + result.stderr
    if result.returncode != 0:
        logs = "".join(p.read_text(errors="replace")[-3000:] for p in cwd.glob("*_errors.log"))
        pytest.fail(
            f"{command[0]} failed ({result.returncode}):\n{output[-3000:]}\n{logs}\n"
            f"serial log:\n{guest.tail()}"
        )
    return output


def _check_appliance(guest: Guest, tmp_path: Path) -> None:
    console = guest.console()
    grown = re.search(r"root filesystem is ([0-9.]+)G", console)
    assert grown, f"first boot did not report the root's size:\n{guest.tail()}"
    assert float(grown.group(1)) > 3.0, f"root not grown to the 4 GiB disk:\n{guest.tail()}"
    assert re.search(r"first login: user admin, one-time password \S{8,}", console), guest.tail()

    health = _health(guest)
    assert (health["web"], health["switch"]) == ("ok", "ok"), health

    options = _run(
        guest, "sipsak", "-vv", "-E", "tcp", "-H", "127.0.0.1", "-l", str(free_port()),
        "-s", f"sip:ping@127.0.0.1:{guest.sip_port}", cwd=tmp_path,
    )  # fmt: skip
    assert "SIP/2.0 200" in options

    _run(
        guest, "sipp", f"127.0.0.1:{guest.sip_port}", "-sf", str(SCENARIO), "-s", DEMO_NUMBER,
        "-t", "t1", "-m", "1", "-i", "127.0.0.1", "-p", str(free_port()), "-nostdin",
        "-timeout", "120", "-timeout_error", "-trace_err", cwd=tmp_path,
    )  # fmt: skip

    # The first web sign-in, with the one-time password the console showed, must replace it.
    one_time = re.search(r"one-time password (\S+)", console)
    assert one_time, guest.tail()
    first = sign_in(f"http://127.0.0.1:{guest.http_port}", "admin", one_time.group(1))
    assert first.url.endswith("/password"), first.page
    assert "Choose your new password" in first.page


@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_image_boots_and_answers_web_options_and_a_call(
    image: Path, firmware: str, tmp_path: Path
) -> None:
    """Boots by ``firmware``; the web, SIP OPTIONS and the IVR on the demo number answer."""
    with booted(image, firmware, tmp_path) as guest:
        _check_appliance(guest, tmp_path)
