"""Measure rankings on held-out queries through the real Search API.

One fused Search per query (rerank off, every candidate returned) yields the BM25, dense and fused
runs at once: the response carries each leg's rank for every candidate, and the fused list is the
union of both legs' top `candidate_k`. A second Search per query with the reranker on gives the
served ranking of a model version.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from services.common.channels import open_channel
from services.common.config import EndpointSettings
from services.ir import metrics
from services.proto.feedrank.v1 import retriever_pb2, retriever_pb2_grpc

METRICS = ("ndcg@10", "mrr@10", "recall@100", "hit@1")


@dataclass
class Measured:
    rows: dict[str, dict[str, float]] = field(default_factory=dict)
    runs: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)


class RankingMeter:
    def __init__(self, retriever_target: str, corpus_id: str, queries: dict[str, str],
                 qrels: dict[str, dict[str, int]], *, endpoints: EndpointSettings, admin_token: str,
                 candidate_k: int = 100, timeout_s: float = 60.0):
        self.corpus_id = corpus_id
        self.queries = {q: queries[q] for q in sorted(qrels) if q in queries}
        self.qrels = {q: qrels[q] for q in self.queries}
        self.candidate_k = candidate_k
        self.timeout_s = timeout_s
        # The meter names version ids (v0, the learned version), which only the admin token may do.
        self._channel = open_channel(retriever_target, endpoints, token=admin_token)
        self._search = retriever_pb2_grpc.RetrieverStub(self._channel).Search

    def close(self) -> None:
        self._channel.close()

    def legs(self, progress=None) -> Measured:
        """bm25, dense and fused rows from one rerank-free Search per query."""
        runs: dict[str, dict[str, dict[str, float]]] = {"bm25": {}, "dense": {}, "fused": {}}
        latencies = []
        for qid, text in self.queries.items():
            t0 = time.perf_counter()
            response = self._search(retriever_pb2.SearchRequest(
                corpus_id=self.corpus_id, query=text, top_k=2 * self.candidate_k, candidate_k=self.candidate_k,
                rerank_mode="none", session_id="demo-eval", no_intervention=True), timeout=self.timeout_s)
            latencies.append((time.perf_counter() - t0) * 1000)
            runs["fused"][qid] = {r.doc_id: -float(r.rank) for r in response.results}
            runs["bm25"][qid] = {r.doc_id: -float(r.legs.lexical_rank) for r in response.results if r.legs.lexical_rank}
            runs["dense"][qid] = {r.doc_id: -float(r.legs.vector_rank) for r in response.results if r.legs.vector_rank}
            if progress:
                progress()
        measured = Measured(runs=runs)
        for name, run in runs.items():
            measured.rows[name] = metrics.evaluate(run, self.qrels, METRICS)
        measured.rows["fused"].update(_latency(latencies))
        return measured

    def served(self, model: str, progress=None) -> tuple[dict[str, float], dict[str, dict[str, float]], str]:
        """The ranking users get with the reranker serving `model` (alias or version id)."""
        run: dict[str, dict[str, float]] = {}
        latencies, versions = [], set()
        for qid, text in self.queries.items():
            t0 = time.perf_counter()
            response = self._search(retriever_pb2.SearchRequest(
                corpus_id=self.corpus_id, query=text, top_k=self.candidate_k, candidate_k=self.candidate_k,
                model=model, session_id="demo-eval", no_intervention=True), timeout=self.timeout_s)
            latencies.append((time.perf_counter() - t0) * 1000)
            versions.add(response.model_version)
            run[qid] = {r.doc_id: -float(r.rank) for r in response.results}
            if progress:
                progress()
        row = {**metrics.evaluate(run, self.qrels, METRICS), **_latency(latencies)}
        return row, run, ",".join(sorted(versions))


def _latency(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"search_p50_ms": ordered[len(ordered) // 2], "search_p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]}
