"""Opening corpora with the configured lexical and vector backends.

`Corpora` is the catalog both ingestion and search use: it opens each corpus once (the
embedded indexes hold file handles and caches) and hands out the same handles afterwards.
A serving retriever opens it `read_only`: several replicas may then serve one data dir (see
`vector/edge.py` for what that takes with the embedded vector shard).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.common.config import RetrievalSettings
from services.common.errors import ErrorKind, FeedrankError
from services.retriever.corpus import (
    DocStore,
    check_corpus_id,
    corpora_root,
    list_corpus_ids,
    missing_corpus,
    read_manifest,
)
from services.retriever.embedder import DIMENSION
from services.retriever.lexical.base import LexicalIndex
from services.retriever.vector.base import VectorIndex


@dataclass
class Corpus:
    corpus_id: str
    root: Path
    store: DocStore
    lexical: LexicalIndex
    vector: VectorIndex
    lock: threading.Lock = field(default_factory=threading.Lock)  # one writer at a time

    def close(self) -> None:
        self.lexical.close()
        self.vector.close()
        self.store.close()


class Corpora:
    def __init__(
        self, settings: RetrievalSettings, data_dir: Path, *, opensearch: Any = None, qdrant: Any = None,
        read_only: bool = False,
    ):
        self.settings = settings
        self.data_dir = data_dir
        self.read_only = read_only
        self._opensearch = opensearch
        self._qdrant = qdrant
        self._open: dict[str, Corpus] = {}
        self._lock = threading.Lock()

    def ids(self) -> list[str]:
        return list_corpus_ids(self.data_dir)

    def get(self, corpus_id: str, *, create: bool = False) -> Corpus:
        check_corpus_id(corpus_id)
        if create and self.read_only:
            raise FeedrankError(ErrorKind.FAILED_PRECONDITION,
                                f"corpus {corpus_id!r}: a read-only catalog (a serving retriever) creates nothing")
        with self._lock:
            if corpus_id in self._open:
                return self._open[corpus_id]
            root = corpora_root(self.data_dir) / corpus_id
            if not create and not (root / "docs.sqlite").is_file():
                raise missing_corpus(corpus_id, self.data_dir)
            self._check_backends(corpus_id, root)
            corpus = Corpus(
                corpus_id, root, DocStore(root / "docs.sqlite"), self._lexical(corpus_id, root), self._vector(corpus_id, root)
            )
            self._open[corpus_id] = corpus
            return corpus

    def _check_backends(self, corpus_id: str, root: Path) -> None:
        manifest = read_manifest(root)
        built = (manifest.get("lexical_backend"), manifest.get("vector_backend"))
        wanted = (self.settings.lexical_backend, self.settings.vector_backend)
        if manifest and built != wanted:
            raise FeedrankError(
                ErrorKind.FAILED_PRECONDITION,
                f"corpus {corpus_id!r} was indexed with {built[0]}+{built[1]} but retrieval is configured for "
                f"{wanted[0]}+{wanted[1]}: re-ingest it (feedrank ingest --corpus-id {corpus_id} ...)",
                "corpus_id",
            )

    def _lexical(self, corpus_id: str, root: Path) -> LexicalIndex:
        s = self.settings
        if s.lexical_backend == "tantivy":
            from services.retriever.lexical.tantivy_index import TantivyIndex

            return TantivyIndex(root / "lexical")
        from services.retriever.lexical.opensearch_index import OpenSearchIndex, connect

        if self._opensearch is None:
            self._opensearch = connect(s)
        index = (s.opensearch_index_prefix + corpus_id).lower()
        return OpenSearchIndex(self._opensearch, index, k1=s.bm25_k1, b=s.bm25_b, retries=s.opensearch_bulk_retries)

    def _vector(self, corpus_id: str, root: Path) -> VectorIndex:
        s = self.settings
        if s.vector_backend == "edge":
            from services.retriever.vector.edge import EdgeIndex

            return EdgeIndex(root / "vectors", DIMENSION, read_only=self.read_only)
        from services.retriever.vector.qdrant import QdrantIndex, connect

        if self._qdrant is None:
            self._qdrant = connect(s)
        return QdrantIndex(self._qdrant, s.qdrant_collection_prefix + corpus_id, DIMENSION)

    def document_count(self, corpus_id: str) -> int:
        """Without opening the indexes: listing corpora must not lock shards or need their servers."""
        with self._lock:
            opened = self._open.get(corpus_id)
        if opened is not None:
            return opened.store.count()
        store = DocStore(corpora_root(self.data_dir) / corpus_id / "docs.sqlite")
        try:
            return store.count()
        finally:
            store.close()

    def close(self) -> None:
        with self._lock:
            opened, self._open = list(self._open.values()), {}
        for corpus in opened:
            corpus.close()
