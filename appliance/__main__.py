"""``python -m appliance`` is the ``callbox`` command."""

import sys

from appliance.cli import main

sys.exit(main())
