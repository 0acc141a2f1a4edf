"""``python -m geomm.cli``: the ``geomm`` command."""

import sys

from geomm.cli import main

sys.exit(main())
