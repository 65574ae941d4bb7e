"""``python -m rtseg`` is the same program as the ``rtseg`` console script."""

import sys

from rtseg.cli import main

sys.exit(main())
