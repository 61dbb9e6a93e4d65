"""The rerank result cache: bounded LRU, version-keyed, thread-safe."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from prometheus_client import REGISTRY

from services.common.errors import FeedrankError
from services.reranker.cache import ResultCache, cache_key

TEXTS = ["first document", "second document"]


def key(n: int, version: str = "v1") -> bytes:
    return cache_key(version, f"query {n}", TEXTS, 256, True)


def test_key_changes_with_every_input():
    base = cache_key("v1", "q", TEXTS, 256, True)
    assert base == cache_key("v1", "q", list(TEXTS), 256, True)  # same request, same key
    variants = [
        cache_key("v2", "q", TEXTS, 256, True),
        cache_key("v1", "q2", TEXTS, 256, True),
        cache_key("v1", "q", TEXTS[::-1], 256, True),
        cache_key("v1", "q", TEXTS[:1], 256, True),
        cache_key("v1", "q", TEXTS, 128, True),
        cache_key("v1", "q", TEXTS, 256, False),
        # Parts that would run together without length prefixes must still differ.
        cache_key("v1", "q", ["first", " document", "second document"], 256, True),
        cache_key("v1", "q", ["first documentsecond document"], 256, True),
        cache_key("v1q", "", TEXTS, 256, True),
    ]
    assert len({base, *variants}) == len(variants) + 1
    assert len(base) == 32


def test_a_swap_never_serves_the_old_versions_scores():
    cache = ResultCache(16)
    cache.put(cache_key("old", "q", TEXTS, 256, True), np.array([0.9, 0.1]))
    assert cache.get(cache_key("new", "q", TEXTS, 256, True)) is None
    cache.put(cache_key("new", "q", TEXTS, 256, True), np.array([0.2, 0.8]))
    np.testing.assert_array_equal(cache.get(cache_key("new", "q", TEXTS, 256, True)), [0.2, 0.8])
    np.testing.assert_array_equal(cache.get(cache_key("old", "q", TEXTS, 256, True)), [0.9, 0.1])


def test_bounded_with_least_recently_used_eviction():
    cache = ResultCache(3)
    for n in range(3):
        cache.put(key(n), np.array([float(n)]))
    assert cache.get(key(0)) is not None  # 0 is now the most recently used; 1 is the oldest
    cache.put(key(3), np.array([3.0]))
    assert len(cache) == 3
    assert cache.get(key(1)) is None
    assert [cache.get(key(n)) is not None for n in (0, 2, 3)] == [True, True, True]
    cache.put(key(2), np.array([20.0]))  # overwrite refreshes, does not grow
    cache.put(key(4), np.array([4.0]))
    assert len(cache) == 3 and cache.get(key(0)) is None
    assert cache.get(key(2))[0] == 20.0


def test_stored_scores_cannot_be_changed_through_put_or_get():
    cache = ResultCache(4)
    scores = np.array([1.0, 2.0])
    cache.put(key(0), scores)
    scores[0] = 99.0
    got = cache.get(key(0))
    assert got[0] == 1.0
    with pytest.raises(ValueError):
        got[0] = 5.0


def test_stats_and_prometheus_counters():
    hits0 = REGISTRY.get_sample_value("feedrank_rerank_cache_hits_total") or 0.0
    misses0 = REGISTRY.get_sample_value("feedrank_rerank_cache_misses_total") or 0.0
    cache = ResultCache(4)
    cache.get(key(0))
    cache.put(key(0), np.array([1.0]))
    cache.get(key(0))
    cache.get(key(0))
    stats = cache.stats
    assert (stats.hits, stats.misses, stats.entries, stats.capacity) == (2, 1, 1, 4)
    assert REGISTRY.get_sample_value("feedrank_rerank_cache_hits_total") - hits0 == 2
    assert REGISTRY.get_sample_value("feedrank_rerank_cache_misses_total") - misses0 == 1


def test_clear_empties_it():
    cache = ResultCache(4)
    cache.put(key(0), np.array([1.0]))
    cache.clear()
    assert len(cache) == 0 and cache.get(key(0)) is None


def test_zero_entries_disables_it():
    cache = ResultCache(0)
    cache.put(key(0), np.array([1.0]))
    assert not cache.enabled
    assert cache.get(key(0)) is None
    assert len(cache) == 0
    assert (cache.stats.hits, cache.stats.misses) == (0, 0)
    with pytest.raises(FeedrankError) as caught:
        ResultCache(-1)
    assert caught.value.field == "cache_entries"


def test_threads_sharing_it_see_consistent_entries():
    cache = ResultCache(64)
    errors: list[str] = []
    barrier = threading.Barrier(8)

    def worker(t: int) -> None:
        barrier.wait()
        for i in range(400):
            n = (t * 7 + i) % 128  # more distinct keys than entries: constant eviction
            k = key(n)
            cache.put(k, np.array([float(n)]))
            got = cache.get(k)
            if got is not None and got[0] != float(n):
                errors.append(f"key {n} served {got[0]}")
            if len(cache) > 64:
                errors.append("cache grew past its bound")

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    stats = cache.stats
    assert stats.hits + stats.misses == 8 * 400
    assert stats.entries <= 64


def test_request_vectors_are_part_of_the_key():
    import numpy as np

    from services.reranker.cache import cache_key

    base = ("v1", "q", ["a", "b"], 128, True)
    one = [np.ones(4, np.float32), None]
    other = [np.full(4, 2.0, np.float32), None]
    assert cache_key(*base, one) == cache_key(*base, [np.ones(4, np.float64), None])  # same float32 values
    assert cache_key(*base, one) != cache_key(*base, other)
    assert cache_key(*base, one) != cache_key(*base)
    assert cache_key(*base, [None, None]) != cache_key(*base, [np.zeros(0, np.float32), None])
