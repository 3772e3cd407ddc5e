"""`python -m api serve|check ...`, the same as the `constrained` command."""

import sys

from api.cli import main

sys.exit(main())
