"""Running the Debian tools the core's tests compare against (espeak-ng, sox, tshark)."""

from __future__ import annotations

import os
import shutil
import subprocess


def run_tool(args: list[str]) -> str:
    """Run a command-line tool and return its standard output.

    Under ``make test-core-sanitize`` the sanitizer runtimes are preloaded
    into this process; the tools are not built for them, so they run
    without the preload.
    """
    assert shutil.which(args[0]), f"{args[0]} is missing: run scripts/install-system-deps"
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    return subprocess.run(args, check=True, env=env, capture_output=True, text=True).stdout
