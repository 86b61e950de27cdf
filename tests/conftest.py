"""Settings for the whole suite."""

from __future__ import annotations

from hypothesis import settings

# Tests check behaviour, never timing: a property test on a loaded machine must not
# fail because one example took longer than Hypothesis's default 200 ms deadline.
settings.register_profile("callbox", deadline=None)
settings.load_profile("callbox")
