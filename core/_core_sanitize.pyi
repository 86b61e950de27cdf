# The sanitizer build (CALLBOX_SANITIZE=1) has exactly the surface of core._core.
from core._core import *  # noqa: F403 (a stub re-exporting a whole module)
