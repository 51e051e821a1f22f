"""``python -m shmastra_cloud``: the same as the ``shmastra-cloud`` command."""

import sys

from . import main

sys.exit(main())
