"""Which ``image/`` the installer ISO's test last passed at: ``image/iso-tested``.

The ISO test is slow (it builds the ISO, installs from it and boots the
result), so ``make test`` runs it only when the tracked contents of ``image/``
differ from those recorded in ``image/iso-tested``; ``make iso-test`` runs it
always and, when it passes, records the current contents
(``python -m tests.image.iso_stamp write``). The record is a SHA-256 over the
path and bytes of every file git tracks or would track under ``image/``, the
stamp itself excluded.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys

from tests.image.qemu import ROOT

STAMP = ROOT / "image" / "iso-tested"


def image_tree_digest() -> str:
    """SHA-256 of the paths and contents of ``image/``'s files (tracked or not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "image"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout  # fmt: skip
    digest = hashlib.sha256()
    for name in sorted(set(listed.decode().split("\0")) - {"", "image/iso-tested"}):
        path = ROOT / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def image_changed_since_iso_test() -> bool:
    """True when ``image/`` differs from what the ISO test last passed at."""
    recorded = STAMP.read_text().strip() if STAMP.exists() else ""
    return recorded != image_tree_digest()


def main(argv: list[str]) -> int:
    """``write``: record the current ``image/`` as tested; ``check``: say whether it changed."""
    if argv == ["write"]:
        STAMP.write_text(image_tree_digest() + "\n")
        print(f"{STAMP.relative_to(ROOT)}: ISO test passed at this image/")
        return 0
    if argv == ["check"]:
        changed = image_changed_since_iso_test()
        print("image/ changed since the ISO test passed" if changed else "image/ unchanged")
        return 0
    print("usage: python -m tests.image.iso_stamp write|check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
