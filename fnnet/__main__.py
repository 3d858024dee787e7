"""``python -m fnnet``: see :mod:`fnnet.cli`."""

import sys

from fnnet.cli import main

sys.exit(main())
