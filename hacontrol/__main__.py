"""`python -m hacontrol` is the `hacontrol` command."""

from __future__ import annotations

import sys

from hacontrol.cli import main

sys.exit(main())
