"""Test-only: a skewed, stalling clock for a demo subprocess (on its PYTHONPATH as sitecustomize).

Every `time.time()` reads DEMO_TEST_CLOCK_OFFSET seconds ahead of the real clock and now and then
stalls for up to a few milliseconds, at truly random moments: threads (the MTurk server, publish's
and collect's request pools) interleave differently from any other run, and every timestamp
differs, as on a loaded machine with another clock. The same seed must still give the same figures.
"""

import os
import random
import time

_real_time = time.time
_real_sleep = time.sleep
_offset = float(os.environ.get("DEMO_TEST_CLOCK_OFFSET", "0"))
_stall = float(os.environ.get("DEMO_TEST_CLOCK_STALL", "0.002"))
_rng = random.Random(os.urandom(16))


def _slow_time() -> float:
    if _rng.random() < 0.25:
        _real_sleep(_rng.random() * _stall)
    return _real_time() + _offset


time.time = _slow_time
