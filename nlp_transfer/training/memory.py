"""Peak memory of a block of work: GPU memory allocated on CUDA, resident memory (RSS) on a CPU.

    with PeakMemory() as peak:
        clf.fit(...)
    peak.megabytes, peak.kind        # e.g. 1830.5, "rss": the process's peak inside the block
    peak.increase_megabytes          # e.g. 412.0: the peak above the level when the block began

On Linux the RSS is sampled from /proc every 20 ms while the block runs, so each block gets its own
peak (the kernel's own high-water mark only ever grows over the life of the process). The peak is
the whole process's: everything still alive from earlier work is in it. `increase_megabytes` is the
block's own share, what `compare` reports per strategy, so a later strategy does not inherit an
earlier one's memory (memory an earlier block freed but the allocator kept can be reused without
showing up, so it is a lower bound when earlier blocks ran in the same process).
"""

from __future__ import annotations

import os
import resource
import sys
import threading
from pathlib import Path

__all__ = ["PeakMemory", "current_rss_bytes"]

_STATM = Path("/proc/self/statm")


def current_rss_bytes() -> int | None:
    """This process's resident memory now, or None where /proc is not available."""
    try:
        return int(_STATM.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class PeakMemory:
    """Context manager measuring the peak memory inside the block (see module docstring)."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak_bytes = 0
        self.baseline_bytes = 0  # the level when the block began
        self.kind = "rss"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakMemory:
        import torch

        if torch.cuda.is_available():
            self.kind = "gpu"
            torch.cuda.reset_peak_memory_stats()
            self.baseline_bytes = torch.cuda.memory_allocated()
            return self
        if current_rss_bytes() is None:
            self.kind = "rss (process lifetime)"  # no /proc: the OS high-water mark is the best there is
            self.baseline_bytes = self._high_water_mark()
            return self
        self.peak_bytes = self.baseline_bytes = current_rss_bytes() or 0
        self._thread = threading.Thread(target=self._sample, name="peak-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        import torch

        if self.kind == "gpu":
            self.peak_bytes = torch.cuda.max_memory_allocated()
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.peak_bytes = max(self.peak_bytes, current_rss_bytes() or 0)
        else:
            self.peak_bytes = self._high_water_mark()

    @staticmethod
    def _high_water_mark() -> int:
        scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB elsewhere
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_bytes = max(self.peak_bytes, current_rss_bytes() or 0)

    @property
    def megabytes(self) -> float:
        return self.peak_bytes / 2**20

    @property
    def increase_megabytes(self) -> float:
        """The peak above the level when the block began: the block's own memory."""
        return max(self.peak_bytes - self.baseline_bytes, 0) / 2**20
