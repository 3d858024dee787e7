"""``python -m fnnet``: see :mod:`fnnet.cli`."""

import signal
import sys


def _run() -> int:
    try:
        from fnnet.cli import main

        code = main()
    except KeyboardInterrupt:  # a Ctrl-C while NumPy is imported, or just as main returns
        print("fnnet: interrupted", file=sys.stderr)
        code = 130
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the work is over: let the exit finish quietly
    return code


if __name__ == "__main__":
    sys.exit(_run())
