"""The batch curve: pairs/s of one forward pass by batch size, measured on the machine at start-up,
and what it says about batching (whether merging requests pays, how big a batch, where to cut).

On a CPU a small model saturates the cores at a handful of pairs, so a bigger batch adds latency
and padding but little throughput; on a GPU it pays far more. Measuring beats guessing per machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass(frozen=True)
class BatchCurve:
    pairs_per_s: dict[int, float]  # batch size -> pairs/s, at `tokens` tokens per pair
    tokens: int

    def rate(self, n: int) -> float:
        """Pairs/s at batch size n: the nearest measured size at or below n (the curve is flat past its end)."""
        below = [size for size in self.pairs_per_s if size <= n] or [min(self.pairs_per_s)]
        return self.pairs_per_s[max(below)]

    @property
    def gain(self) -> float:
        """The most batching can add: the best pairs/s over that of batch size 1."""
        return max(self.pairs_per_s.values()) / self.rate(1)

    def best_size(self, tolerance: float = 0.05) -> int:
        """The smallest batch within `tolerance` of the best pairs/s: bigger ones only add latency."""
        best = max(self.pairs_per_s.values())
        return min(size for size, rate in self.pairs_per_s.items() if rate >= (1 - tolerance) * best)

    def seconds(self, n: int, width: int) -> float:
        """Estimated time of a forward pass of n pairs padded to `width` tokens."""
        return n * width / (self.rate(n) * self.tokens)

    def joining_pays(self, n: int, width: int, length: int) -> bool:
        """Whether one more pair of `length` tokens should join a batch of n padded to `width` (its longest),
        rather than run later on its own: joining pays `width` tokens at the batch's rate."""
        return self.seconds(n + 1, width) <= self.seconds(n, width) + self.seconds(1, length)


def measure(run: Callable[[int], None], max_size: int, budget_s: float, tokens: int) -> BatchCurve:
    """Time `run(n)` (one forward pass of n pairs) for doubling n up to max_size within about budget_s.

    Each size keeps its fastest pass: on a shared machine the slow ones measure the neighbours. The
    measuring stops once doubling the batch stops adding 5%, or when the budget is spent (sizes 1 and
    2 are always measured), so a busy machine delays the first batch by about the budget, not more.
    """
    sizes = [s for s in SIZES if s <= max_size] or [1]
    per_size = budget_s / len(sizes)
    deadline = time.perf_counter() + budget_s
    curve: dict[int, float] = {}
    for size in sizes:
        if size > 2 and time.perf_counter() > deadline:
            break
        run(size)  # first pass of a shape allocates; not timed
        best, spent = float("inf"), 0.0
        while spent < per_size or best == float("inf"):
            t0 = time.perf_counter()
            run(size)
            took = time.perf_counter() - t0
            best, spent = min(best, took), spent + took
        curve[size] = size / best
        previous = [s for s in curve if s < size]
        if previous and curve[size] < 1.05 * curve[max(previous)] and size >= 4:
            break
    return BatchCurve(curve, tokens)
