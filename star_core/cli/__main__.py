"""`python -m star_core.cli`: the `star` command without its console script."""

import sys

from .commands import main

sys.exit(main())
