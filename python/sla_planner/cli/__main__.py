"""``python -m sla_planner.cli``."""

import sys

from . import main

sys.exit(main())
