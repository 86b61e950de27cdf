"""The appliance image boots under qemu (TCG) by BIOS and by UEFI and answers.

``make image`` builds ``image/build/callbox.qcow2`` (needs root). Each test
boots a copy-on-write overlay of it, grown to 4 GiB so the first boot's
partition growth runs, with user-mode networking (``restrict=on``) and host
forwards on 127.0.0.1 for HTTP and SIP over TCP (see ``tests/image/qemu.py``
for why not UDP). It waits for the console's ``CALLBOX READY`` line on the
serial log, then checks from the host: the root filesystem filled the disk,
the web health check says web and switch are up, sipsak's OPTIONS gets 200,
and SIPp's call to the demo number 4008001234 is answered by the IVR. On a
failure the serial log's tail is in the message; qemu is killed by its PID.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.image.qemu import ROOT, check_disk_boots_and_answers, make, needs_root

IMAGE = ROOT / "image" / "build" / "callbox.qcow2"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600), needs_root]


@pytest.fixture(scope="module")
def image() -> Path:
    """The image, built (or brought up to date) by ``make image``."""
    make("image")
    return IMAGE


@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_image_boots_and_answers_web_options_and_a_call(
    image: Path, firmware: str, tmp_path: Path
) -> None:
    """Boots by ``firmware``; the web, SIP OPTIONS and the IVR on the demo number answer."""
    check_disk_boots_and_answers(image, firmware, tmp_path)
