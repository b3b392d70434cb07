"""What every benchmark here measures with: the median of repeated async calls, in milliseconds."""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable


async def median_ms(fn: Callable[[], Awaitable[object]], n: int, warmup: int = 0) -> float:
    """Call ``fn`` ``warmup`` times untimed, then ``n`` times; the median wall time of those ``n``."""
    for _ in range(warmup):
        await fn()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)
