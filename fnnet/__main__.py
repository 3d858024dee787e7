"""``python -m fnnet``: see :mod:`fnnet.cli`."""

import sys

from fnnet.cli import main

if __name__ == "__main__":
    sys.exit(main())
