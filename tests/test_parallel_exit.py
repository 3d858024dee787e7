"""A Ctrl-C at the worst moment of a parallel call must not leave the process unable to exit."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import fnnet

ENV = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(fnnet.__file__))}

# KeyboardInterrupt where a SIGINT can raise it: while Thread.start waits for a new pool worker
# (inside ThreadPoolExecutor.submit), and while shard 0 of a ShardGroup takes its permit.
INTERRUPTED_START = """
    import threading
    from fnnet.train import parallel
    start = threading.Thread.start
    def interrupted_start(self, *args, **kwargs):
        start(self, *args, **kwargs)
        if self.name.startswith("fnnet"):
            raise KeyboardInterrupt
    threading.Thread.start = interrupted_start
    try:
        parallel.run_shards(lambda i: i, range(4), threads=2)
    except KeyboardInterrupt:
        print("interrupted")
"""
INTERRUPTED_PERMIT = """
    import threading
    import numpy as np
    from fnnet.train.parallel import ShardGroup
    group = ShardGroup(2, threads=2)
    permits = group.permits
    class Interrupted:
        def __enter__(self):
            if threading.current_thread() is threading.main_thread():
                raise KeyboardInterrupt
            return permits.__enter__()
        def __exit__(self, *exc):
            return permits.__exit__(*exc)
        def acquire(self):
            return permits.acquire()
        def release(self):
            permits.release()
    group.permits = Interrupted()
    try:
        group.run(lambda s: group.batch_sum(s)(np.ones(1)))
    except KeyboardInterrupt:
        print("interrupted")
"""


@pytest.mark.parametrize("script", [INTERRUPTED_START, INTERRUPTED_PERMIT], ids=["pool-worker-start", "shard-permit"])
def test_an_interrupt_inside_a_parallel_call_lets_the_process_exit(script: str) -> None:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, env=ENV,
                          timeout=60)  # a hang waits for a worker for ever
    assert (proc.returncode, proc.stdout) == (0, "interrupted\n"), proc.stderr
