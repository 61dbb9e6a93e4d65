"""What the measured batch curve decides: merge or not, how big, and where a length-sorted batch is cut."""

from __future__ import annotations

import time

from services.engine.batch_curve import BatchCurve, measure
from services.retriever.embedder import length_batches


def test_a_flat_curve_says_batching_does_not_pay():
    flat = BatchCurve({1: 100.0, 2: 102.0, 4: 101.0, 8: 103.0}, tokens=128)
    assert flat.gain < 1.1
    assert flat.best_size() == 1
    # Flat: a shorter pair runs faster alone than padded to the batch's longest.
    assert not flat.joining_pays(n=4, width=200, length=50)
    assert flat.joining_pays(n=4, width=200, length=200)


def test_a_rising_curve_batches_up_to_where_it_flattens():
    rising = BatchCurve({1: 50.0, 2: 90.0, 4: 160.0, 8: 200.0, 16: 205.0}, tokens=128)
    assert rising.gain > 4
    assert rising.best_size() == 8
    assert rising.joining_pays(n=4, width=128, length=100)  # a little padding is cheaper than a pass alone
    assert not rising.joining_pays(n=1, width=256, length=8)  # far too short to pay the longest's width
    assert rising.rate(64) == 205.0 and rising.rate(3) == 90.0


def test_measure_reads_the_curve_of_a_forward_pass():
    def forward(n: int) -> None:  # fixed overhead plus a cost per pair: batching pays, then flattens
        time.sleep(0.004 + 0.001 * n)

    curve = measure(forward, max_size=16, budget_s=2.0, tokens=64)
    assert curve.tokens == 64
    assert curve.pairs_per_s[1] < curve.pairs_per_s[2] < curve.pairs_per_s[4]
    assert curve.gain > 2


def test_length_batches_pad_each_batch_to_its_own_longest():
    lengths = [10, 250, 12, 240, 11, 256, 9, 245]
    batches = length_batches(lengths, max_items=4, max_tokens=10_000)
    assert [sorted(lengths[i] for i in b) for b in batches] == [[240, 245, 250, 256], [9, 10, 11, 12]]
    assert sorted(i for b in batches for i in b) == list(range(8))
    # The token budget cuts too: 256 * 2 > 500.
    assert all(len(b) == 1 for b in length_batches([256, 256, 256], max_items=8, max_tokens=500))


def test_measuring_stops_at_the_budget_on_a_slow_machine():
    def slow(n: int) -> None:  # batching pays all the way, but every pass is slow
        time.sleep(0.02 + 0.001 * n)

    started = time.perf_counter()
    curve = measure(slow, max_size=256, budget_s=0.1, tokens=64)
    assert {1, 2} <= set(curve.pairs_per_s) and 256 not in curve.pairs_per_s
    assert time.perf_counter() - started < 1.0
