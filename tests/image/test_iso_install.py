"""The installer ISO installs Callbox onto a blank disk, which then boots and answers.

``make iso`` builds ``image/build/callbox-installer.iso`` (needs root). The
test boots it by BIOS from a CD drive under qemu (TCG) with a blank 4 GiB
disk and a 256 MiB one, picks ``install-serial`` at the isolinux prompt and
answers the installer on the serial console: the ISO's own drive and the
small disk are refused, the 4 GiB disk is named, confirmed, written and read
back, and the machine powers off; from the host, the disk holds the image's
bytes (``qemu-img compare``). That disk then boots by BIOS and by UEFI
(each time a copy-on-write overlay of it) and is checked as the image test
checks the image: the first boot grew the root, the web answers, SIP OPTIONS
gets 200 and the IVR answers a call to the demo number. The ISO's live entry
boots by UEFI (the default entry, nothing typed) and answers the same way.

Slow, so ``make test`` runs it only when ``image/`` changed since it last
passed (``image/iso-tested``, see ``tests/image/iso_stamp.py``);
``make iso-test`` runs it always. To stay within ``make test``'s time, there
it runs the install and the UEFI boot only.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.image.iso_stamp import image_changed_since_iso_test
from tests.image.qemu import (
    READY_MARKER,
    ROOT,
    check_appliance_answers,
    check_disk_boots_and_answers,
    make,
    needs_root,
    running,
)

ISO = ROOT / "image" / "build" / "callbox-installer.iso"
DISK_IMAGE = ROOT / "image" / "build" / "callbox.img"
EVERY_CHECK = os.environ.get("CALLBOX_ISO_TEST") == "always"
"""``make iso-test``: every check. ``make test`` (when image/ changed): the install and one boot."""
IMAGE_CHANGED = image_changed_since_iso_test()
INSTALL_TIMEOUT_S = 1800.0
"""Boot, decompress and write 2 GiB, read it back: slow under TCG on a busy machine."""

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(7200),
    needs_root,
    pytest.mark.skipif(
        not EVERY_CHECK and not IMAGE_CHANGED,
        reason="image/ unchanged since the ISO test last passed (image/iso-tested); "
        "make iso-test runs it anyway",
    ),
]


@pytest.fixture(scope="module")
def iso() -> Path:
    """The installer ISO, built (or brought up to date) by ``make iso``."""
    make("iso")
    return ISO


def _blank_disk(path: Path, size: str) -> Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), size], check=True)
    return path


@pytest.fixture(scope="module")
def installed_disk(iso: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A blank 4 GiB disk after the ISO's installer wrote Callbox onto it, asked on the console."""
    tmp_path = tmp_path_factory.mktemp("install")
    target = _blank_disk(tmp_path / "target.qcow2", "4G")
    small = _blank_disk(tmp_path / "small.qcow2", "256M")
    with running(tmp_path, "bios", disks=[target, small], cdrom=iso) as machine:
        machine.wait_for("boot:")
        machine.type("install-serial\r")
        machine.wait_for("Disks on this machine:", INSTALL_TIMEOUT_S)
        machine.wait_for("Disk to install Callbox on")
        listing = machine.console()[: machine.seen].rsplit("Disks on this machine:", 1)[1]
        assert re.search(r"vda\s+4\.0GiB", listing), f"no 4 GiB vda listed:\n{machine.tail()}"
        assert re.search(r"vdb\s+256MiB", listing), f"no 256 MiB vdb listed:\n{machine.tail()}"
        machine.type("sr0\r")
        machine.wait_for("CALLBOX INSTALL REFUSED: sr0 is the installer's own medium")
        machine.type("vdb\r")
        machine.wait_for("CALLBOX INSTALL REFUSED: vdb is too small")
        machine.type("vda\r")
        machine.wait_for("Type 'erase vda' to go on")
        machine.type("erase vda\r")
        machine.wait_for("CALLBOX INSTALL: writing the Callbox image")
        machine.wait_for("CALLBOX INSTALL DONE: /dev/vda holds Callbox", INSTALL_TIMEOUT_S)
        machine.wait_for_poweroff()
        assert "CALLBOX INSTALL FAILED" not in machine.console(), machine.tail()
    # From outside too: the disk holds the image's bytes, and zeros after them.
    subprocess.run(["qemu-img", "compare", "-q", str(DISK_IMAGE), str(target)], check=True)
    return target


only_in_iso_test = pytest.mark.skipif(
    not EVERY_CHECK and IMAGE_CHANGED,
    reason="make iso-test runs it; make test runs the install and the UEFI boot only "
    "(the installed disk is the image's bytes, which the image test boots by BIOS)",
)


@pytest.mark.parametrize("firmware", [pytest.param("bios", marks=only_in_iso_test), "uefi"])
def test_disk_installed_from_the_iso_boots_and_answers(
    installed_disk: Path, firmware: str, tmp_path: Path
) -> None:
    """The disk the installer wrote boots by ``firmware``, grows, answers web, SIP and a call."""
    check_disk_boots_and_answers(installed_disk, firmware, tmp_path)


@only_in_iso_test
def test_iso_live_system_boots_by_uefi_and_answers(iso: Path, tmp_path: Path) -> None:
    """The ISO's default entry, by UEFI, runs the appliance from the medium: it answers too."""
    with running(tmp_path, "uefi", cdrom=iso) as machine:
        machine.wait_for(READY_MARKER)
        check_appliance_answers(machine, tmp_path)
