"""The progress bar of a long run, and how a run is cut into chunks for it.

Why chunks: a run is one kernel call with no host round-trip, so nothing can report progress
from inside it. A run started from Python (not under ``jax.jit`` tracing) with a progress bar is
instead cut into equal chunks, each one call of the same compiled program (``steps`` is part of
what is compiled, so equal chunks compile once), and the bar advances after each. The state
carries everything (step counter, spike rings, RNG counters), so the chunks give exactly the
result of one call.
"""

from __future__ import annotations

import sys
import time

__all__ = ["ProgressBar", "chunk_steps"]

TARGET_CHUNKS = 20
MIN_CHUNK_STEPS = 100


def chunk_steps(steps: int, multiple: int = 1) -> list[int]:
    """Chunk lengths for ``steps`` steps: about :data:`TARGET_CHUNKS` equal chunks of at least
    :data:`MIN_CHUNK_STEPS` steps, each a multiple of ``multiple`` (the recording period) when
    the run is; a remainder chunk only where no divisor fits."""
    if steps < 2 * MIN_CHUNK_STEPS:
        return [steps]
    best = None
    for k in range(min(TARGET_CHUNKS, steps // MIN_CHUNK_STEPS), 1, -1):
        size = steps // k
        if steps % k == 0 and size % multiple == 0:
            best = [size] * k
            break
    if best is None:
        k = min(TARGET_CHUNKS, steps // MIN_CHUNK_STEPS)
        size = max(multiple, (steps // k) // multiple * multiple)
        best = [size] * (steps // size)
        if steps % size:
            best.append(steps % size)
    return best


class ProgressBar:
    """A one-line text bar on stderr: ``[#####     ] 500.0/1000.0 ms (50%) 1.2 s``."""

    WIDTH = 30

    def __init__(self, total_ms: float, label: str = "spikeforge", stream=None):
        self.total = total_ms
        self.label = label
        self.stream = stream or sys.stderr
        self.start = time.perf_counter()
        self.done = 0.0

    def update(self, ms: float):
        self.done += ms
        frac = min(1.0, self.done / self.total) if self.total else 1.0
        filled = int(round(frac * self.WIDTH))
        elapsed = time.perf_counter() - self.start
        line = (
            f"\r{self.label} [{'#' * filled}{' ' * (self.WIDTH - filled)}] "
            f"{self.done:.1f}/{self.total:.1f} ms ({frac:4.0%}) {elapsed:.1f} s"
        )
        self.stream.write(line)
        self.stream.flush()

    def close(self):
        self.stream.write("\n")
        self.stream.flush()
