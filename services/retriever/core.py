"""The retriever's core: ingestion, hybrid search, run-time config, corpus listing.

gRPC (server.py) and the CLI are adapters over `RetrieverCore`; protobuf appears here only
for the two outgoing calls, built in `convert.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from services.common.auth import require_admin
from services.common.config import FusionSettings, RerankingSettings, Settings, validated
from services.common.credentials import client_admin_token
from services.common.documents import Doc
from services.common.errors import invalid
from services.common.legs import Candidate
from services.common.query_token import QueryIdSigner, signing_key
from services.ir import beir
from services.registry.store import ALIASES
from services.proto.feedrank.v1 import reranker_pb2
from services.retriever import convert, interventions, online
from services.retriever.backends import Corpora, Corpus
from services.retriever.corpus import check_corpus_id
from services.retriever.domain import Hit, Legs, SearchOutcome, SearchQuery
from services.retriever.embedder import DIMENSION, Embedder
from services.retriever.experiment_watch import ExperimentWatch, TrainerExperiments
from services.retriever.fusion import fuse_by
from services.retriever.ingest import IngestReport, Progress, copy_beir_extras, delete_docs, ingest_docs
from services.retriever.query_adapter import NOTHING, QueryAdapter, QueryAdapters, ServedVersion
from services.retriever.runtime_config import RuntimeConfig
from services.retriever.upstreams import ImpressionSender, RerankerClient

log = logging.getLogger(__name__)


class RetrieverCore:
    def __init__(
        self,
        settings: Settings,
        *,
        corpora: Corpora | None = None,
        embedder: Embedder | None = None,
        reranker: RerankerClient | None = None,
        impressions: ImpressionSender | None = None,
        rng: random.Random | None = None,
        experiments: ExperimentWatch | None = None,
    ):
        self.settings = settings
        self.data_dir = settings.data_path
        self.corpora = corpora or Corpora(settings.retrieval, self.data_dir)
        self._embedder = embedder
        self.reranker = reranker or RerankerClient(settings.endpoints.reranker, settings.endpoints)
        self.impressions = impressions or ImpressionSender(
            settings.endpoints.feedback, settings.retrieval.impression_timeout_s, settings.endpoints
        )
        self.adapters = QueryAdapters(
            settings.registry_path if settings.retrieval.follow_model_adapter else None, DIMENSION,
            settings.retrieval.adapter_refresh_s,
        )
        self.config = RuntimeConfig(self.data_dir / "retriever" / "config.json", settings.fusion, settings.reranking,
                                    refresh_s=settings.retrieval.config_refresh_s)
        self._rng = rng or random.Random()
        il = settings.interleaving
        self.experiments = experiments or ExperimentWatch(
            TrainerExperiments(settings.endpoints.trainer, settings.endpoints, client_admin_token(settings)),
            il.watch_ttl_s, il.max_consecutive_failures)
        self._shadows: set[asyncio.Task] = set()
        # Every query_id carries what was shown, signed: the feedback service refuses clicks on anything else.
        self.signer = QueryIdSigner(signing_key(settings.feedback.signing_key, self.data_dir))

    # -- embedder ---------------------------------------------------------------------------
    @property
    def embedder(self) -> Embedder:
        """Loaded on first use: exporting to ONNX the first time takes a while."""
        if self._embedder is None:
            r = self.settings.retrieval
            engine = self.settings.engine.model_copy(update={"intra_op_threads": r.embedder_threads})
            self._embedder = Embedder.from_data_dir(
                self.data_dir, engine, r.embedder_max_length, r.embed_batch_size, r.query_precision, r.doc_precision
            )
        return self._embedder

    # -- ingestion --------------------------------------------------------------------------
    @property
    def _backends(self) -> tuple[str, str]:
        return self.settings.retrieval.lexical_backend, self.settings.retrieval.vector_backend

    def ingest(
        self, corpus_id: str, docs: Iterable[Doc], *, prune: bool = False, source: str = "", progress: Progress | None = None
    ) -> IngestReport:
        corpus = self.corpora.get(check_corpus_id(corpus_id), create=True)
        return ingest_docs(
            corpus, self.embedder, docs, prune=prune, progress=progress, source=source, backends=self._backends,
            window=self.settings.retrieval.ingest_window_docs,
        )

    def ingest_beir(self, corpus_id: str, dataset: Path, *, prune: bool = False, progress: Progress | None = None) -> IngestReport:
        beir.check_dataset(dataset)
        corpus = self.corpora.get(check_corpus_id(corpus_id), create=True)
        copy_beir_extras(dataset, corpus.root)
        return self.ingest(corpus_id, beir.iter_corpus(dataset), prune=prune, source=str(dataset.resolve()), progress=progress)

    def delete(self, corpus_id: str, ids: list[str]) -> IngestReport:
        return delete_docs(self.corpora.get(corpus_id), ids, self.embedder, self._backends)

    def list_corpora(self) -> list[tuple[str, int]]:
        return [(cid, self.corpora.document_count(cid)) for cid in self.corpora.ids()]

    # -- search -----------------------------------------------------------------------------
    def legs(self, corpus: Corpus, query: str, depth: int) -> Legs:
        """Every leg, sequentially (eval and benchmarks; search runs them concurrently)."""
        timed = {name: _timed(search, query, depth) for name, search in self._searches(corpus).items()}
        return Legs({name: hits for name, (hits, _) in timed.items()}, {name: ms for name, (_, ms) in timed.items()})

    def _searches(self, corpus: Corpus, adapter: QueryAdapter | None = None) -> dict[str, Callable[[str, int], list]]:
        """Each leg's search (query text, depth) -> (doc id, score) best first, by leg name (services/common/legs.py)."""
        def vector(query: str, depth: int) -> list:
            embedded = self.embedder.encode_query(query)
            return corpus.vector.search(embedded if adapter is None else adapter.apply(embedded), depth)

        return {"lexical": corpus.lexical.search, "vector": vector}

    def _served_version(self, request: SearchQuery, mode: str, reranking: RerankingSettings) -> ServedVersion:
        """What the version that will rerank this search changes here: its adapter and its learned fusion
        (NOTHING when no local version reranks)."""
        if mode not in ("local", "learning"):
            return NOTHING
        model = request.model or (reranking.reranker_local_model if mode == "local" else "champion")
        return self.adapters.for_search(model, request.corpus_id)

    def validate(self, request: SearchQuery) -> tuple[Corpus, int, int, FusionSettings, RerankingSettings]:
        if not request.query or not request.query.strip():
            raise invalid("query", "must not be empty")
        limit = self.settings.retrieval.max_top_k
        top_k = request.top_k or self.settings.retrieval.top_k
        if not 1 <= top_k <= limit:
            raise invalid("top_k", f"must be between 1 and {limit}, got {request.top_k}")
        candidate_k = request.candidate_k or self.settings.retrieval.candidate_k
        if not 1 <= candidate_k <= limit:
            raise invalid("candidate_k", f"must be between 1 and {limit}, got {request.candidate_k}")
        if request.rerank_mode is not None and request.rerank_mode not in ("none", "local", "learning", "cloud"):
            raise invalid("rerank_mode", f"must be none, local, learning or cloud, got {request.rerank_mode!r}")
        check_corpus_id(request.corpus_id)
        if request.model and request.model not in ALIASES:
            require_admin("model", "naming a model version rather than an alias")
        corpus = self.corpora.get(request.corpus_id)
        fusion, reranking = self.config.current()
        if request.fusion:
            fusion = validated("fusion", FusionSettings, fusion, request.fusion)
        return corpus, top_k, candidate_k, fusion, reranking

    async def search(self, request: SearchQuery) -> SearchOutcome:
        started = time.perf_counter()
        corpus, top_k, candidate_k, fusion, reranking = self.validate(request)
        mode = request.rerank_mode or reranking.reranker_mode
        version = self._served_version(request, mode, reranking)
        adapter = version.adapter
        configured = fusion
        # The version's learned fusion over the configured one; fields the request sets itself stay its own.
        fusion = version.fusion_over(fusion, keep=request.fusion or ())
        searches = self._searches(corpus, adapter)
        timed = dict(zip(searches, await asyncio.gather(*(
            asyncio.to_thread(_timed, search, request.query, candidate_k) for search in searches.values()))))
        topn = reranking.tribrid_reranker_topn if mode != "none" else 0
        head = fuse_by({name: hits for name, (hits, _) in timed.items()}, fusion, limit=max(top_k, topn))
        # A primary-key lookup of a few rows (well under a millisecond): cheaper inline than a thread hop.
        docs = corpus.store.get([f.doc_id for f in head])
        hits = [self._hit(f, docs.get(f.doc_id)) for f in head]
        model_version, reranked, degraded, rerank_ms = "none", False, "", 0.0
        experiment, key, challenger = self._experiment(request, mode, reranking), "", None
        if topn and hits:
            rerank_started = time.perf_counter()
            rerank_request = await self._rerank_request(request, corpus, mode, reranking, hits[:topn], docs)
            if experiment is not None:
                key = online.search_key(request.session_id, request.query)
                side = _ChallengerSide(request, corpus, mode, reranking, configured, version,
                                       {name: leg for name, (leg, _) in timed.items()}, candidate_k,
                                       max(top_k, topn), topn)
                challenger = self._challenger(experiment, key, side, rerank_request, hits)
            model_version, reranked, degraded = await self._rerank(request, reranking, rerank_request, hits[:topn])
            rerank_ms = (time.perf_counter() - rerank_started) * 1000
            if reranked:
                hits = sorted(hits[:topn], key=lambda h: (-h.rerank_score, h.fused.rank)) + hits[topn:]
        served = None
        if challenger is not None and experiment.shadow:
            self._shadow(experiment, hits[:topn], challenger, degraded)
        elif challenger is not None:
            served = await self._interleave(experiment, key, hits, challenger, top_k, degraded)
            hits = _reordered(hits, served, challenger)
        hits = hits[:top_k]
        for rank, hit in enumerate(hits, 1):
            hit.rank = hit.ranked_rank = rank
        logged = self._logged()
        intervention = None
        interleaved = served is not None and bool(served.teams)
        if logged and not interleaved and \
                interventions.eligible(self.settings.interventions, request.corpus_id, request.no_intervention):
            hits, intervention = interventions.intervene(hits, self.settings.interventions, self._rng)
        # Signed once the order is final (after any intervention): the id names exactly what the caller is shown.
        query_id = self.signer.sign(request.corpus_id, request.query, [h.doc_id for h in hits], time.time())
        outcome = SearchOutcome(
            query_id=query_id, hits=hits, model_version=model_version, reranked=reranked, degraded_reason=degraded,
            leg_ms={name: ms for name, (_, ms) in timed.items()}, rerank_ms=rerank_ms,
            total_ms=(time.perf_counter() - started) * 1000,
            query_adapter_version=adapter.version_id if adapter else "", intervention=intervention,
            experiment_id=served.experiment_id if interleaved else "",
        )
        if logged:
            self._impression(request, outcome)
        return outcome

    def _hit(self, fused: Candidate, doc: Doc | None) -> Hit:
        chars = self.settings.retrieval.snippet_chars
        return Hit(fused.doc_id, doc.title if doc else "", (doc.text if doc else "")[:chars], fused)

    async def _rerank_request(
        self, request: SearchQuery, corpus: Corpus, mode: str, reranking: RerankingSettings, hits: list[Hit],
        docs: dict[str, Doc],
    ) -> reranker_pb2.RerankRequest:
        model = request.model or (reranking.reranker_local_model if mode == "local" else "")
        vectors = {}
        if self.settings.retrieval.send_vectors_to_reranker and mode != "cloud":
            vectors = await asyncio.to_thread(corpus.vector.vectors, [h.doc_id for h in hits])
        rerank_request = convert.rerank_request(
            request.query, hits, docs, reranking.rerank_input_snippet_chars, model, vectors
        )
        rerank_request.corpus_id = request.corpus_id  # the reranker serves this corpus's aliases only
        return rerank_request

    async def _rerank(
        self, request: SearchQuery, reranking: RerankingSettings, rerank_request: reranker_pb2.RerankRequest,
        hits: list[Hit],
    ) -> tuple[str, bool, str]:
        """(model version, reranked?, degraded reason). Never raises for a reranker fault."""
        try:
            response = await self.reranker.rerank(rerank_request, reranking.reranker_timeout)
        except grpc.aio.AioRpcError as err:
            code = err.code()
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                reason = f"reranker deadline exceeded ({reranking.reranker_timeout:g}s)"
            else:
                reason = f"reranker failed: {code.name}: {err.details()}"
            log.warning("search %s degraded to fused order: %s", request.corpus_id, reason)
            return "none", False, reason
        for result in response.results:
            if 0 <= result.index < len(hits):
                hits[result.index].rerank_score = result.score
        return response.model_version, response.model_version != "none", ""

    # -- online experiments (services/retriever/online.py) --------------------------------------
    def _experiment(self, request: SearchQuery, mode: str,
                    reranking: RerankingSettings) -> online.OnlineExperiment | None:
        """The corpus's running experiment when this search may be interleaved: a user's search served by the
        corpus's champion (not one naming a model, not evaluation traffic, not fused-only, cloud or a pinned
        local version)."""
        by_champion = mode == "learning" or (mode == "local" and reranking.reranker_local_model == "champion")
        if not by_champion or request.model or request.no_intervention:
            return None
        return self.experiments.current(request.corpus_id)

    def _challenger(self, experiment: online.OnlineExperiment, key: str, side: _ChallengerSide,
                    rerank_request: reranker_pb2.RerankRequest, hits: list[Hit]) -> asyncio.Task | None:
        """The challenger's ranking, started beside the champion's, for a search in the experiment."""
        if not online.assigned(experiment, key):
            return None
        return asyncio.create_task(self._challenger_scores(experiment, side, rerank_request, hits))

    async def _challenger_scores(self, experiment: online.OnlineExperiment, side: _ChallengerSide,
                                 rerank_request: reranker_pb2.RerankRequest,
                                 hits: list[Hit]) -> online.Scored:
        """The challenger ranks its own candidates: the legs fused by its learned fusion (the vector leg
        through its query adapter), its head reranked by the corpus's challenger alias. When it changes
        neither from the champion's version, those are the champion's candidates and request. Any fault here
        is the challenger's: the caller falls back to the champion."""
        request = side.request
        version = await asyncio.to_thread(self.adapters.for_search, "challenger", request.corpus_id)
        if version.version_id and version.version_id != experiment.challenger_version:
            raise online.ChallengerGone(f"the challenger alias names {version.version_id}, "
                                        f"not {experiment.challenger_version}")
        own = _changes(version) != _changes(side.champion)
        if own:
            legs = side.legs
            if _adapter_id(version) != _adapter_id(side.champion):  # a query adapter changes the vector leg
                vector = self._searches(side.corpus, version.adapter)["vector"]
                legs = {**legs, "vector": await asyncio.to_thread(vector, request.query, side.candidate_k)}
            fusion = version.fusion_over(side.configured, keep=request.fusion or ())
            fused = fuse_by(legs, fusion, limit=side.limit)
            docs = side.corpus.store.get([f.doc_id for f in fused])
            hits = [self._hit(f, docs.get(f.doc_id)) for f in fused]
            rerank_request = await self._rerank_request(request, side.corpus, side.mode, side.reranking,
                                                        hits[:side.topn], docs)
        asked = reranker_pb2.RerankRequest()
        asked.CopyFrom(rerank_request)
        asked.model = "challenger"  # the corpus's challenger alias: an alias needs no admin token
        call = self.reranker.rerank(asked, side.reranking.reranker_timeout
                                    + self.settings.interleaving.challenger_timeout_s)
        scored = await online.challenger_scores(call, experiment, hits, side.topn)
        if own:  # its own hits show its scores (shared ones are the champion's, scored by it)
            for doc_id, score in scored.ranked:
                scored.hits[doc_id].rerank_score = score
        return scored

    async def _interleave(self, experiment: online.OnlineExperiment, key: str, hits: list[Hit],
                          challenger: asyncio.Task, top_k: int, degraded: str) -> online.Served:
        # A champion that failed leaves the fused order, which is not the champion's ranking: nothing to compare.
        # (A corpus with no champion version is served the fused order as its champion: that one is compared.)
        if degraded:
            challenger.cancel()
            return online.Served(tuple(h.doc_id for h in hits[:top_k]))
        served = await online.interleave(experiment, key, [h.doc_id for h in hits],
                                         lambda: online.challenger_ranking(challenger), top_k,
                                         self.settings.interleaving.challenger_timeout_s)
        self._heard(experiment, served.fallback_reason)
        return served

    def _shadow(self, experiment: online.OnlineExperiment, head: list[Hit], challenger: asyncio.Task,
                degraded: str) -> None:
        """Score the challenger beside this search, off its path: the search answers with the champion alone."""
        if degraded:
            challenger.cancel()
            return
        champion = [(h.doc_id, h.rerank_score) for h in head]

        async def observe() -> None:
            self._heard(experiment, await online.shadow(experiment, champion, challenger,
                                                        self.settings.interleaving.challenger_timeout_s))

        task = asyncio.create_task(observe())
        self._shadows.add(task)  # a reference until done, or the task may be collected mid-flight
        task.add_done_callback(self._shadows.discard)

    def _heard(self, experiment: online.OnlineExperiment, failure: str) -> None:
        if failure:
            self.experiments.failed(experiment, failure)
        else:
            self.experiments.succeeded(experiment)

    def _logged(self) -> bool:
        """Is this search sampled for an impression (only those may be intervened on: the log must say so)?"""
        rate = self.settings.retrieval.impression_sample_rate
        return rate > 0 and self._rng.random() < rate

    def _impression(self, request: SearchQuery, outcome: SearchOutcome) -> None:
        try:
            self.impressions.send(convert.impression_event(request, outcome))
        except Exception:  # an impression must never fail the search it describes
            log.exception("could not queue impression")

    # -- config -----------------------------------------------------------------------------
    def get_config(self) -> tuple[FusionSettings, RerankingSettings]:
        return self.config.current()

    def update_config(self, fusion: dict, reranking: dict) -> tuple[FusionSettings, RerankingSettings]:
        return self.config.update(fusion, reranking)

    async def aclose(self) -> None:
        if self._shadows:
            await asyncio.wait(list(self._shadows), timeout=5)
        await self.experiments.close()
        await self.impressions.close()
        await self.reranker.close()
        self.corpora.close()

    def close(self) -> None:
        self.corpora.close()


def _timed(search: Callable[[str, int], list], query: str, depth: int) -> tuple[list, float]:
    started = time.perf_counter()
    hits = search(query, depth)
    return hits, (time.perf_counter() - started) * 1000


@dataclass(frozen=True)
class _ChallengerSide:
    """What the challenger's side of an interleaved search starts from: the search, the legs' raw results and
    the champion's version (what it changes here)."""

    request: SearchQuery
    corpus: Corpus
    mode: str
    reranking: RerankingSettings
    configured: FusionSettings  # before any version's learned fusion
    champion: ServedVersion
    legs: dict[str, list[tuple[str, float]]]  # each leg's (doc id, score) as the champion's search found them
    candidate_k: int
    limit: int  # fused candidates kept
    topn: int  # of which reranked


def _adapter_id(version: ServedVersion) -> str:
    return version.adapter.version_id if version.adapter else ""


def _changes(version: ServedVersion) -> tuple:
    """What a version changes in the retriever: equal for two versions = the same candidates."""
    return _adapter_id(version), version.fusion


def _reordered(hits: list[Hit], served: online.Served, challenger: asyncio.Task) -> list[Hit]:
    """The hits in the order `served` shows them, each with the team that contributed it. A document only the
    challenger retrieved is shown as its candidate."""
    by_id = {h.doc_id: h for h in hits}
    if served.teams and challenger.done() and not challenger.cancelled() and challenger.exception() is None:
        by_id = {**challenger.result().hits, **by_id}
    shown = [by_id[d] for d in served.doc_ids]
    for hit, team in zip(shown, served.teams):
        hit.team = team
    return shown


@contextlib.contextmanager
def open_offline(settings: Settings) -> Iterator[RetrieverCore]:
    """A core on the data dir for CLI verbs that need no running service."""
    # Offline work embeds documents in bulk: every core helps there (a served query wants one thread).
    retrieval = settings.retrieval.model_copy(update={"embedder_threads": settings.retrieval.ingest_threads})
    core = RetrieverCore(settings.replace(retrieval=retrieval))
    try:
        yield core
    finally:
        core.close()
