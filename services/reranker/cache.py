"""A bounded LRU of rerank scores for repeated requests.

The key is a digest of everything that changes the scores: the model version id, the query,
every document's text and the vector sent with it (if any), the token limit, whether over-long
input is truncated and how long documents are split into passages and folded back. Because the
version id is part of the key, a hot-swap can never serve the old version's scores: the new
version simply misses until it has scored the request itself. `clear()` after a swap only frees
the memory the old version's entries hold.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from prometheus_client import Counter

from services.common.errors import invalid

CACHE_HITS = Counter("feedrank_rerank_cache_hits_total", "Rerank requests answered from the result cache")
CACHE_MISSES = Counter("feedrank_rerank_cache_misses_total", "Rerank requests the result cache did not hold")

_KEY_DOMAIN = b"feedrank.rerank-cache.v1"


def cache_key(
    version_id: str, query: str, texts: Sequence[str], max_length: int, truncate: bool,
    vectors: Sequence[np.ndarray | None] = (), passages: str = "",
) -> bytes:
    """A 32-byte digest naming one scoring request. Every variable-length part is length-prefixed,
    so no two different requests can run together into the same byte stream."""
    digest = hashlib.blake2b(_KEY_DOMAIN, digest_size=32)

    def part(data: bytes) -> None:
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)

    part(version_id.encode())
    part(query.encode())
    part(str(max_length).encode())
    part(b"T" if truncate else b"F")
    part(passages.encode())
    digest.update(len(texts).to_bytes(8, "little"))
    for text in texts:
        part(text.encode())
    digest.update(len(vectors).to_bytes(8, "little"))
    for vector in vectors:
        # No vector and an empty one differ; float32 little-endian bytes, so equal vectors match.
        part(b"-" if vector is None else b"v" + np.asarray(vector, dtype="<f4").tobytes())
    return digest.digest()


@dataclass(frozen=True)
class CacheStats:
    hits: int
    misses: int
    entries: int
    capacity: int


class ResultCache:
    """Thread-safe LRU of score arrays, at most `entries` of them; `entries=0` disables it.

    Stored arrays are private read-only copies: a caller mutating what it put or got cannot
    change what the next request is served.
    """

    def __init__(self, entries: int):
        if entries < 0:
            raise invalid("cache_entries", f"must be >= 0, got {entries}")
        self.capacity = entries
        self._items: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    @property
    def enabled(self) -> bool:
        return self.capacity > 0

    def get(self, key: bytes) -> np.ndarray | None:
        # A disabled cache counts nothing: a 0% hit rate would only be noise on the dashboard.
        if not self.enabled:
            return None
        with self._lock:
            scores = self._items.get(key)
            if scores is None:
                self._misses += 1
            else:
                self._items.move_to_end(key)
                self._hits += 1
        (CACHE_MISSES if scores is None else CACHE_HITS).inc()
        return scores

    def put(self, key: bytes, scores: np.ndarray) -> None:
        if not self.enabled:
            return
        stored = np.array(scores, copy=True)
        stored.flags.writeable = False
        with self._lock:
            self._items[key] = stored
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    @property
    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(self._hits, self._misses, len(self._items), self.capacity)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
