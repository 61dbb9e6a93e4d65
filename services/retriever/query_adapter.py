"""The retriever follows the version serving the searched corpus: its query adapter and its fusion.

A query-adapter version (manifest `extra.vector_leg_adapter`, services/trainer/adapter.py) changes
the query tower: q' = normalize(q + q W) against the unchanged corpus vectors. The retriever applies
it in its vector leg, so the candidates the reranker sees are the ones the version was chosen on
(bench/learning.md row 8). A version with a learned fusion (manifest `fusion`,
services/trainer/fusion_learner.py) has the legs fused by it: the candidates the reranker sees and the
tail below them are the version's own. Which version: the one the reranker is asked for (the request's
model, else `champion` in learning mode or the configured local model), resolved among the searched
corpus's aliases (else the global scope's corpus-neutral ones) in the registry the reranker reads; alias
targets are re-read at most every `retrieval.adapter_refresh_s`, so a promotion reaches the retriever
as it reaches the reranker's hot-swap, with no restart. Another corpus's promotion never changes
which adapter or fusion a corpus's searches use.

A version's adapter and fusion are only applied to the corpus it was trained on (its manifest's
corpus_id). Any fault (no registry, a damaged version) falls back to the base tower and the configured
fusion with a warning: a search never fails for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.common.config import FusionSettings, validated
from services.common.errors import FeedrankError
from services.engine.pooling import adapt_queries
from services.retriever.fusion import learned_fields
from services.registry.store import Registry, open_registry

log = logging.getLogger(__name__)

ADAPTER_FILE = "adapter.npy"


@dataclass(frozen=True)
class QueryAdapter:
    version_id: str
    corpus_id: str
    W: np.ndarray

    def apply(self, query: np.ndarray) -> np.ndarray:
        return adapt_queries(query, self.W)


@dataclass(frozen=True)
class ServedVersion:
    """What a version changes in the retriever: its query adapter and its learned fusion (None: none)."""

    version_id: str
    corpus_id: str
    adapter: QueryAdapter | None = None
    fusion: dict[str, Any] | None = None  # the FusionSettings fields its learned fusion sets (checked at load)

    def fusion_over(self, configured: FusionSettings, keep: Collection[str] = ()) -> FusionSettings:
        """`configured` with the learned fusion applied, except the fields named in `keep` (a request's own)."""
        if not self.fusion:
            return configured
        return configured.model_copy(update={k: v for k, v in self.fusion.items() if k not in keep})


NOTHING = ServedVersion("", "")


class QueryAdapters:
    """`root` None turns following off. The registry is opened once the trainer has created it: the
    retriever only reads it (a read-only mount in Kubernetes) and never creates its folders."""

    def __init__(self, root: Path | None, dimension: int, refresh_s: float, cache_size: int = 4):
        self.root = root
        self.dimension = dimension
        self.registry: Registry | None = None
        self.refresh_s = refresh_s
        self._targets: dict[tuple[str, str], tuple[float, str | None]] = {}  # (name, corpus) -> (read at, id)
        self._adapters: dict[str, ServedVersion] = {}  # version id -> what it changes here
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def for_search(self, model: str, corpus_id: str) -> ServedVersion:
        """The adapter to embed this search's query with and the fusion to fuse its legs by (NOTHING: the
        base tower and the configured fusion)."""
        if self.root is None or not model:
            return NOTHING
        if self.registry is None:
            if not (self.root / "versions").is_dir():
                return NOTHING
            self.registry = open_registry(self.root)
        try:
            version_id = self._resolve(model, corpus_id)
        except (FeedrankError, OSError, ValueError) as err:
            log.warning("vector leg uses the base query tower: model %r: %s", model, err)
            return NOTHING
        try:
            served = self._load(version_id) if version_id else NOTHING
        except (FeedrankError, OSError, ValueError) as err:
            # Remembered as "nothing": one warning per damaged version, not one per search.
            log.warning("vector leg uses the base query tower and the configured fusion: version %s: %s",
                        version_id, err)
            self._remember(version_id, NOTHING)
            return NOTHING
        if served.corpus_id not in ("", corpus_id):
            return NOTHING
        return served

    def _resolve(self, name: str, corpus_id: str) -> str | None:
        now = time.monotonic()
        with self._lock:
            cached = self._targets.get((name, corpus_id))
        if cached is not None and now - cached[0] < self.refresh_s:
            return cached[1]
        version_id = self.registry.resolve(name, corpus_id)
        with self._lock:
            self._targets[(name, corpus_id)] = (now, version_id)
        return version_id

    def _load(self, version_id: str) -> ServedVersion:
        with self._lock:
            if version_id in self._adapters:
                return self._adapters[version_id]
        manifest = self.registry.manifest(version_id)
        adapter = None
        if manifest.vector_leg_adapter:
            path = Path(self.registry.local_path(version_id)) / ADAPTER_FILE
            W = np.load(path).astype(np.float32)
            if W.shape != (self.dimension, self.dimension):
                raise ValueError(f"{ADAPTER_FILE} of {version_id} is {W.shape}, the query vectors are "
                                 f"{self.dimension}-d")
            adapter = QueryAdapter(version_id, manifest.corpus_id, W)
            log.info("vector leg: query adapter of %s loaded", version_id)
        fusion = None
        if manifest.fusion is not None:
            fusion = learned_fields(manifest.fusion)
            validated("fusion", FusionSettings, FusionSettings(), fusion)  # refused here, not in a search
            log.info("fusion of %s loaded: %s", version_id, fusion)
        served = ServedVersion(version_id, manifest.corpus_id, adapter, fusion)
        self._remember(version_id, served)
        return served

    def _remember(self, version_id: str, served: ServedVersion) -> None:
        with self._lock:
            while len(self._adapters) >= self._cache_size:
                self._adapters.pop(next(iter(self._adapters)))
            self._adapters[version_id] = served
