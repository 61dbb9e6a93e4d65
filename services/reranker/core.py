"""The reranker's one core object; the gRPC servicer and the HTTP gateway are adapters over it.

query + documents -> validated -> (cache | batcher over the chosen version | cloud API) -> ranked
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import numpy as np

from services import __version__
from services.common.auth import require_admin
from services.common.config import Settings
from services.common.errors import ErrorKind, FeedrankError, invalid
from services.common.legs import Candidate
from services.engine.passages import passage_plan, passages_of
from services.engine.session import choose_providers
from services.registry.store import ALIASES, GLOBAL, check_scope
from services.reranker import MIN_TOKENS_PER_DOC
from services.reranker.batching import Batcher
from services.reranker.cache import ResultCache, cache_key
from services.reranker.cloud import CloudReranker
from services.reranker.combine import final_scores
from services.reranker.versions import LoadedVersion, VersionPool

PASSTHROUGH = "none"


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    vector: tuple[float, ...] = ()  # the dense leg's vector of the document, when the caller sent it
    fused: Candidate | None = None  # the retriever's LegScores (fused score, each leg's rank and score), if sent

    @property
    def candidate(self) -> Candidate:
        """What the retriever said of the document; score 0 and no legs when the caller sent nothing."""
        return self.fused or Candidate(self.id, 0.0)


@dataclass(frozen=True)
class RerankQuery:
    query: str
    documents: list[Document]
    top_n: int = 0
    model: str = ""
    truncate: bool = True
    return_text: bool = False
    max_tokens_per_doc: int = 0  # > 0: documents are cut to this many tokens before scoring
    corpus_id: str = GLOBAL  # whose aliases `model` names; GLOBAL: the corpus-neutral scope


@dataclass(frozen=True)
class Ranked:
    index: int
    id: str
    score: float
    text: str = ""


@dataclass
class Timings:
    queue_ms: float = 0.0
    tokenize_ms: float = 0.0
    inference_ms: float = 0.0
    total_ms: float = 0.0


@dataclass(frozen=True)
class RerankOutcome:
    results: list[Ranked]
    model_version: str
    model_alias: str
    mode: str
    timings: Timings = field(default_factory=Timings)
    cached: bool = False


class RerankerCore:
    def __init__(
        self, settings: Settings, pool: VersionPool, batcher: Batcher, cache: ResultCache,
        cloud: CloudReranker | None = None,
    ):
        self.settings = settings
        self.pool = pool
        self.batcher = batcher
        self.cache = cache
        self.cloud = cloud

    @property
    def mode(self) -> str:
        return self.settings.reranking.reranker_mode

    @property
    def default_model(self) -> str:
        return self.settings.reranking.reranker_local_model if self.mode == "local" else "champion"

    async def rerank(self, request: RerankQuery, deadline: float | None = None) -> RerankOutcome:
        """`deadline` is time.monotonic() based; work past it is dropped before the model."""
        started = time.perf_counter()
        self._validate(request)
        if request.model and request.model not in ALIASES:
            await self.pool.check_exists(request.model)  # a mistyped id is the caller's mistake, said as such
            # Any version, of any corpus, loaded on demand: an operator's tool, not a reader's.
            require_admin("model", "naming a model version rather than an alias")
        name = request.model or self.default_model
        texts = [self._snippet(d.text) for d in request.documents]
        if self.mode == "none":
            scores, version, timings, cached = self._passthrough(len(texts)), PASSTHROUGH, Timings(), False
        elif self.mode == "cloud":
            scores, version, timings, cached = await self._cloud_scores(request.query, texts)
        else:
            loaded = await self.pool.get(name, request.corpus_id)
            if loaded is None:
                scores, version, timings, cached = self._passthrough(len(texts)), PASSTHROUGH, Timings(), False
            else:
                scores, timings, cached = await self._local_scores(loaded, request, texts, deadline)
                version = loaded.manifest.version_id
                scores = self._combine(loaded, request, scores)
        timings.total_ms = (time.perf_counter() - started) * 1000
        return RerankOutcome(
            results=self._rank(request, scores), model_version=version, model_alias=name,
            mode=self.mode, timings=timings, cached=cached,
        )

    def _validate(self, request: RerankQuery) -> None:
        limits = self.settings.reranking
        if not request.query.strip():
            raise invalid("query", "must not be empty")
        if len(request.query.encode()) > limits.max_text_bytes:
            raise invalid("query", f"longer than {limits.max_text_bytes} bytes")
        if not request.documents:
            raise invalid("documents", "at least one document is required")
        if len(request.documents) > limits.max_documents:
            raise invalid("documents", f"{len(request.documents)} documents; at most {limits.max_documents} allowed")
        for i, doc in enumerate(request.documents):
            if len(doc.text.encode()) > limits.max_text_bytes:
                raise invalid(f"documents[{i}].text", f"longer than {limits.max_text_bytes} bytes")
        if request.top_n < 0:
            raise invalid("top_n", "must be >= 0")
        if request.max_tokens_per_doc and request.max_tokens_per_doc < MIN_TOKENS_PER_DOC:
            raise invalid("max_tokens_per_doc", f"must be at least {MIN_TOKENS_PER_DOC} (0 = no limit)")
        check_scope(request.corpus_id)
        if request.model and request.model not in ALIASES and self.mode in ("none", "cloud"):
            raise invalid("model", f"mode {self.mode} serves no model versions")

    def _snippet(self, text: str) -> str:
        limit = self.settings.reranking.rerank_input_snippet_chars
        return text[:limit] if limit else text

    @staticmethod
    def _passthrough(n: int) -> np.ndarray:
        # Input order kept: a strictly falling score per position.
        return np.linspace(1.0, 0.0, num=n, endpoint=False, dtype=np.float32) if n > 1 else np.ones(n, np.float32)

    async def _local_scores(
        self, loaded: LoadedVersion, request: RerankQuery, texts: list[str], deadline: float | None
    ) -> tuple[np.ndarray, Timings, bool]:
        scorer = loaded.scorer
        if request.max_tokens_per_doc:
            # Cohere's meaning: the document is cut to this many tokens first; passages split what is left.
            texts = await asyncio.to_thread(scorer.document_heads, texts, request.max_tokens_per_doc)
        vectors = [np.asarray(d.vector, dtype=np.float32) if d.vector else None for d in request.documents]
        scorer.check_vectors(vectors)
        plan = passage_plan(self.settings.reranking, scorer.passage_room(request.query))
        key = cache_key(loaded.manifest.version_id, request.query, texts, scorer.max_length, request.truncate,
                        vectors, plan.key)
        hit = self.cache.get(key)
        if hit is not None:
            return hit, Timings(), True
        t0 = time.perf_counter()
        with self.batcher.announce():
            if not request.truncate:
                lengths = await asyncio.to_thread(scorer.pair_lengths, request.query, texts)
                too_long = [i for i, n in enumerate(lengths) if n > scorer.max_length]
                if too_long:
                    raise invalid(
                        f"documents[{too_long[0]}].text",
                        f"query + document is {lengths[too_long[0]]} tokens, over the model's {scorer.max_length}; "
                        "set truncate=true (long documents are then scored as passages) or shorten it",
                    )
            passages = await asyncio.to_thread(passages_of, scorer, plan, texts, vectors)
            if len(passages.texts) > self.settings.engine.max_queue_pairs:
                # More than the whole queue holds: retrying could never help, so it is not RESOURCE_EXHAUSTED.
                raise invalid("documents", f"{len(passages.texts)} passages to score, over engine.max_queue_pairs "
                              f"({self.settings.engine.max_queue_pairs}); send fewer or shorter documents")
            given = [vectors[i] for i in passages.owners]
            encodings = await asyncio.to_thread(scorer.prepare, request.query, passages.texts, given)
        tokenize_ms = (time.perf_counter() - t0) * 1000
        if deadline is not None and time.monotonic() > deadline:
            raise FeedrankError(ErrorKind.DEADLINE_EXCEEDED, "deadline passed before scoring")
        # Every passage of every document in one submission: they batch together like any pairs.
        result = await self.batcher.submit(scorer, encodings, deadline)
        scores = passages.fold(result.scores, plan.aggregate)
        self.cache.put(key, scores)
        return scores, Timings(result.queue_s * 1000, tokenize_ms, result.inference_s * 1000), False

    async def _cloud_scores(self, query: str, texts: list[str]) -> tuple[np.ndarray, str, Timings, bool]:
        if self.cloud is None:
            raise FeedrankError(ErrorKind.FAILED_PRECONDITION, "cloud mode is not configured")
        top = self.settings.reranking.reranker_cloud_top_n
        t0 = time.perf_counter()
        answer = await self.cloud.rerank(query, texts, min(top, len(texts)))
        scores = np.asarray(answer.scores, dtype=np.float32)
        # Documents the provider did not score (past reranker_cloud_top_n) keep their order below
        # the rest, with finite scores so every front (JSON included) can carry them.
        unscored = ~np.isfinite(scores)
        scores[unscored] = -1e6 - np.arange(int(unscored.sum()), dtype=np.float32)
        version = f"{answer.provider}:{answer.model}"
        return scores, version, Timings(inference_ms=(time.perf_counter() - t0) * 1000), False

    @staticmethod
    def _combine(loaded: LoadedVersion, request: RerankQuery, scores: np.ndarray) -> np.ndarray:
        return final_scores(loaded.manifest.head, scores, [d.candidate for d in request.documents])

    @staticmethod
    def _rank(request: RerankQuery, scores: np.ndarray) -> list[Ranked]:
        order = np.argsort(-scores, kind="stable")
        if request.top_n:
            order = order[: request.top_n]
        docs = request.documents
        return [
            Ranked(int(i), docs[i].id, float(scores[i]), docs[i].text if request.return_text else "") for i in order
        ]

    def info(self) -> dict:
        engine = self.settings.engine
        providers = choose_providers(engine.device) if self.mode in ("local", "learning") else []
        return {
            "build_version": __version__,
            "mode": self.mode,
            "backend": "onnxruntime" if providers else self.mode,
            "providers": providers,
            "precision": engine.precision,
            "loaded": [v for v in self.pool.loaded()],
            "aliases": self.pool.alias_targets(GLOBAL),
            "corpus_aliases": self.pool.all_alias_targets(),
            "last_reload_at": self.pool.last_reload_at,
            "last_reload_error": self.pool.last_reload_error,
            "swap_count": self.pool.swap_count,
            "cloud_usage": self.cloud.usage() if self.cloud else [],
        }
