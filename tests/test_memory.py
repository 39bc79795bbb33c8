"""Peak-memory measurement used by `compare`: each block gets its own peak."""

import time

import numpy as np
import pytest

from nlp_transfer.training.memory import PeakMemory, current_rss_bytes


def test_peak_covers_a_short_lived_allocation():
    if current_rss_bytes() is None:
        pytest.skip("no /proc on this system")
    with PeakMemory() as quiet:
        pass
    with PeakMemory() as busy:
        block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched, held for several samples, freed inside the block
        block += 1
        time.sleep(0.2)
        del block
    assert busy.megabytes >= quiet.megabytes + 50
    with PeakMemory() as after:
        pass
    assert after.megabytes < busy.megabytes  # a later block does not inherit the earlier peak
