"""gRPC adapter over RerankerCore: proto <-> domain conversion and deadlines, nothing else."""

from __future__ import annotations

import time

import grpc

from services.common.legs import from_leg_scores
from services.proto.feedrank.v1 import common_pb2, reranker_pb2, reranker_pb2_grpc
from services.reranker.core import Document, RerankerCore, RerankOutcome, RerankQuery


def to_query(request: reranker_pb2.RerankRequest) -> RerankQuery:
    return RerankQuery(
        query=request.query,
        documents=[
            Document(d.id, d.text, tuple(d.embedding), from_leg_scores(d.id, d.legs))
            for d in request.documents
        ],
        top_n=request.top_n,
        model=request.model,
        truncate=request.truncate,
        return_text=request.return_text,
        max_tokens_per_doc=request.max_tokens_per_doc,
        corpus_id=request.corpus_id,
    )


def to_response(outcome: RerankOutcome) -> reranker_pb2.RerankResponse:
    t = outcome.timings
    return reranker_pb2.RerankResponse(
        results=[reranker_pb2.RerankResult(index=r.index, id=r.id, score=r.score, text=r.text) for r in outcome.results],
        model_version=outcome.model_version,
        model_alias=outcome.model_alias,
        mode=outcome.mode,
        cached=outcome.cached,
        timings=common_pb2.Timings(
            queue_ms=t.queue_ms, tokenize_ms=t.tokenize_ms, inference_ms=t.inference_ms, total_ms=t.total_ms
        ),
    )


def to_info(info: dict, limits) -> reranker_pb2.RerankerInfo:
    return reranker_pb2.RerankerInfo(
        build_version=info["build_version"],
        mode=info["mode"],
        backend=info["backend"],
        providers=info["providers"],
        precision=info["precision"],
        loaded=[
            reranker_pb2.ModelVersionInfo(
                version_id=v.manifest.version_id, base_model=v.manifest.base_model, run_id=v.manifest.run_id,
                kind=v.manifest.kind, max_length=v.scorer.max_length, loaded_at=v.loaded_at,
                metrics={k: float(x) for k, x in v.manifest.metrics.items() if isinstance(x, (int, float))},
                corpus_id=v.manifest.corpus_id, weights_bytes=v.weights_bytes,
            )
            for v in info["loaded"]
        ],
        aliases=info["aliases"],
        corpus_aliases={c: reranker_pb2.AliasTargets(aliases=a) for c, a in info["corpus_aliases"].items() if c},
        limits=limits,
        last_reload_at=info["last_reload_at"],
        last_reload_error=info["last_reload_error"],
        swap_count=info["swap_count"],
        cloud_usage=[reranker_pb2.CloudUsage(**u) for u in info["cloud_usage"]],
    )


class RerankerServicer(reranker_pb2_grpc.RerankerServicer):
    def __init__(self, core: RerankerCore):
        self.core = core

    async def Rerank(self, request, context: grpc.aio.ServicerContext):
        remaining = context.time_remaining()
        deadline = time.monotonic() + remaining if remaining is not None else None
        return to_response(await self.core.rerank(to_query(request), deadline))

    async def GetInfo(self, request, context):
        s = self.core.settings
        limits = reranker_pb2.BatchingLimits(
            max_batch_pairs=s.engine.max_batch_pairs, max_batch_tokens=s.engine.max_batch_tokens,
            max_wait_ms=s.engine.max_wait_ms, max_queue_pairs=s.engine.max_queue_pairs,
            max_documents=s.reranking.max_documents, max_text_bytes=s.reranking.max_text_bytes,
            enabled=s.engine.batching_enabled,
            policies=[reranker_pb2.BatchPolicy(**p.as_dict()) for p in self.core.batcher.policies()],
        )
        return to_info(self.core.info(), limits)
