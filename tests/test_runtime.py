"""fnnet.runtime: the process settings a training step makes (and that importing fnnet does not)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import numpy as np
import pytest

from fnnet.runtime import KEEP_HEAP_ENV, keep_heap

GLIBC = platform.libc_ver()[0] == "glibc"

# In a fresh interpreter: whether fnnet prepared the process after import and after building a
# train step, then the minor page faults of six rounds of allocating and freeing arrays of a few
# sizes (about what a convolutional step does with its activations).
PROBE = """
import json, resource, sys
import numpy as np
import fnnet, fnnet.runtime as rt
after_import = list(rt._prepared)
model = fnnet.Affine(2)
fnnet.train.make_train_step(model, optimizer=fnnet.sgd(0.1))
after_step = list(rt._prepared)

def faults():
    r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    arrays = [np.ones(n, np.float32) for n in (1_000_000, 3_000_000, 2_000_000, 5_000_000)]
    del arrays
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0

print(json.dumps([after_import, after_step, [faults() for _ in range(6)]]))
"""


def _probe(env_value: str | None) -> tuple[list[bool], list[bool], list[int]]:
    env = {k: v for k, v in os.environ.items() if k != KEEP_HEAP_ENV}
    if env_value is not None:
        env[KEEP_HEAP_ENV] = env_value
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    after_import, after_step, faults = json.loads(out.stdout)
    return after_import, after_step, faults


def test_keep_heap_is_accepted_on_glibc_and_changes_no_result() -> None:
    a = np.arange(12.0).reshape(3, 4)
    before = a @ a.T
    ok = keep_heap()
    assert ok is GLIBC
    np.testing.assert_array_equal(a @ a.T, before)


@pytest.mark.skipif(not (GLIBC and sys.platform.startswith("linux")), reason="glibc's allocator on Linux")
def test_a_train_step_keeps_freed_memory_and_the_environment_opts_out() -> None:
    after_import, after_step, faults = _probe(None)
    assert after_import == []  # importing fnnet leaves the process alone
    assert after_step == [True]
    assert max(faults[2:]) < 100, faults  # freed pages are reused: no fresh pages after warm-up
    after_import, after_step, faults = _probe("0")
    assert (after_import, after_step) == ([], [False])
    assert min(faults[2:]) > 500, faults  # glibc's default: large blocks go back to the OS each round
