"""Every conversion between the retriever's domain objects and protobuf, in one place."""

from __future__ import annotations

import time
import uuid

import numpy as np

from services.common.config import FusionSettings, RerankingSettings, RetrievalSettings
from services.common.documents import Doc
from services.common.errors import invalid
from services.common.legs import WEIGHT_SETTINGS, leg_scores
from services.proto.feedrank.v1 import common_pb2, feedback_pb2, reranker_pb2, retriever_pb2
from services.retriever.domain import Hit, SearchOutcome, SearchQuery

_METHODS = {
    retriever_pb2.FUSION_METHOD_RRF: "rrf",
    retriever_pb2.FUSION_METHOD_WEIGHTED: "weighted",
    retriever_pb2.FUSION_METHOD_DBSF: "dbsf",
}
_METHOD_ENUM = {v: k for k, v in _METHODS.items()}
_NORMS = {retriever_pb2.NORMALIZATION_MINMAX: "minmax", retriever_pb2.NORMALIZATION_ZSCORE: "zscore"}
_NORM_ENUM = {v: k for k, v in _NORMS.items()}


def rerank_request(
    query: str, hits: list[Hit], docs: dict[str, Doc], chars: int, model: str, vectors: dict[str, np.ndarray]
) -> reranker_pb2.RerankRequest:
    documents = []
    for hit in hits:
        doc = docs.get(hit.doc_id)
        text = f"{doc.title}\n{doc.text}".strip() if doc else ""
        vector = vectors.get(hit.doc_id)
        documents.append(reranker_pb2.RerankDocument(
            id=hit.doc_id, text=text[:chars], legs=leg_scores(hit.fused), embedding=[] if vector is None else vector.tolist()))
    return reranker_pb2.RerankRequest(query=query, documents=documents, model=model, truncate=True)


def impression_event(request: SearchQuery, outcome: SearchOutcome) -> feedback_pb2.FeedbackEvent:
    shown = [
        feedback_pb2.ShownResult(doc_id=h.doc_id, rank=h.rank, legs=leg_scores(h.fused), rerank_score=h.rerank_score,
                                 ranked_rank=h.ranked_rank, team=h.team)
        for h in outcome.hits
    ]
    return feedback_pb2.FeedbackEvent(
        event_id=str(uuid.uuid4()),
        query_id=outcome.query_id,
        # Feedback requires a session id; a caller that sends none is one anonymous session.
        session_id=request.session_id or "anonymous",
        timestamp_ms=int(time.time() * 1000),
        source="retriever",
        impression=feedback_pb2.Impression(
            corpus_id=request.corpus_id, query=request.query, results=shown, model_version=outcome.model_version,
            intervention=outcome.intervention.kind if outcome.intervention else "",
            intervention_depth=outcome.intervention.depth if outcome.intervention else 0,
            experiment_id=outcome.experiment_id,
        ),
    )


# -- Retriever RPCs -------------------------------------------------------------------------


def fusion_changes(msg: retriever_pb2.FusionConfig, mask: list[str] | None = None, prefix: str = "fusion.") -> dict:
    """Fields to change. With a mask, exactly the named fields; without one, every field set (non-zero)."""
    values = {
        "method": _METHODS.get(msg.method),
        "rrf_k": msg.rrf_k,
        **{name: getattr(msg, name) for name in WEIGHT_SETTINGS.values()},  # each leg's weight
        "normalization": _NORMS.get(msg.normalization),
    }
    if msg.method and msg.method not in _METHODS:
        raise invalid(f"{prefix}method", f"unknown fusion method {msg.method}")
    if msg.normalization and msg.normalization not in _NORMS:
        raise invalid(f"{prefix}normalization", f"unknown normalization {msg.normalization}")
    if mask is None:
        return {k: v for k, v in values.items() if v}
    return {k: values[k] for k in mask}


def reranking_changes(msg: retriever_pb2.RerankingConfig, mask: list[str] | None = None) -> dict:
    values = {
        "reranker_mode": msg.reranker_mode,
        "reranker_local_model": msg.reranker_local_model,
        "reranker_cloud_provider": msg.reranker_cloud_provider,
        "reranker_cloud_model": msg.reranker_cloud_model,
        "tribrid_reranker_topn": msg.tribrid_reranker_topn,
        "rerank_input_snippet_chars": msg.rerank_input_snippet_chars,
        "reranker_timeout": msg.reranker_timeout,
    }
    if mask is None:
        return {k: v for k, v in values.items() if v}
    return {k: values[k] for k in mask}


def update_request(msg: retriever_pb2.UpdateConfigRequest) -> tuple[dict, dict]:
    if not msg.update_mask:
        return fusion_changes(msg.fusion), reranking_changes(msg.reranking)
    fusion_mask, reranking_mask = [], []
    for path in msg.update_mask:
        group, _, name = path.partition(".")
        if group == "fusion" and name in retriever_pb2.FusionConfig.DESCRIPTOR.fields_by_name:
            fusion_mask.append(name)
        elif group == "reranking" and name in retriever_pb2.RerankingConfig.DESCRIPTOR.fields_by_name:
            reranking_mask.append(name)
        else:
            raise invalid("update_mask", f"unknown field {path!r} (use fusion.<field> or reranking.<field>)")
    fusion = fusion_changes(msg.fusion, fusion_mask)
    if "method" in fusion and fusion["method"] is None:
        raise invalid("fusion.method", "must be set when named in update_mask")
    if "normalization" in fusion and fusion["normalization"] is None:
        raise invalid("fusion.normalization", "must be set when named in update_mask")
    return fusion, reranking_changes(msg.reranking, reranking_mask)


def config_message(fusion: FusionSettings, reranking: RerankingSettings) -> retriever_pb2.RetrievalConfig:
    return retriever_pb2.RetrievalConfig(
        fusion=retriever_pb2.FusionConfig(
            method=_METHOD_ENUM[fusion.method], rrf_k=fusion.rrf_k, normalization=_NORM_ENUM[fusion.normalization],
            **{name: getattr(fusion, name) for name in WEIGHT_SETTINGS.values()},
        ),
        reranking=retriever_pb2.RerankingConfig(
            reranker_mode=reranking.reranker_mode,
            reranker_local_model=reranking.reranker_local_model,
            reranker_cloud_provider=reranking.reranker_cloud_provider,
            reranker_cloud_model=reranking.reranker_cloud_model,
            tribrid_reranker_topn=reranking.tribrid_reranker_topn,
            rerank_input_snippet_chars=reranking.rerank_input_snippet_chars,
            reranker_timeout=reranking.reranker_timeout,
        ),
    )


def search_query(msg: retriever_pb2.SearchRequest, limits: RetrievalSettings) -> SearchQuery:
    check_query_size(msg.query, limits)
    if msg.top_k < 0:
        raise invalid("top_k", f"must be between 1 and the configured maximum, got {msg.top_k}")
    if msg.candidate_k < 0:
        raise invalid("candidate_k", f"must be positive, got {msg.candidate_k}")
    return SearchQuery(
        corpus_id=msg.corpus_id,
        query=msg.query,
        top_k=msg.top_k,
        candidate_k=msg.candidate_k,
        fusion=fusion_changes(msg.fusion) if msg.HasField("fusion") else {},
        rerank_mode=msg.rerank_mode if msg.HasField("rerank_mode") else None,
        session_id=msg.session_id,
        model=msg.model,
        no_intervention=msg.no_intervention,
    )


def check_query_size(query: str, limits: RetrievalSettings) -> None:
    """Refuse a query no real search needs before it reaches the tokenizers and the embedder."""
    size = len(query.encode("utf-8"))
    if size > limits.max_query_bytes:
        raise invalid("query", f"is {size} bytes; the limit is {limits.max_query_bytes} (retrieval.max_query_bytes)")
    terms = len(query.split())
    if terms > limits.max_query_terms:
        raise invalid("query", f"has {terms} terms; the limit is {limits.max_query_terms} (retrieval.max_query_terms)")


def search_response(outcome: SearchOutcome) -> retriever_pb2.SearchResponse:
    return retriever_pb2.SearchResponse(
        query_id=outcome.query_id,
        results=[
            retriever_pb2.SearchResult(
                doc_id=h.doc_id, title=h.title, snippet=h.snippet, legs=leg_scores(h.fused),
                rerank_score=h.rerank_score, rank=h.rank, team=h.team,
            )
            for h in outcome.hits
        ],
        model_version=outcome.model_version,
        query_adapter_version=outcome.query_adapter_version,
        reranked=outcome.reranked,
        degraded_reason=outcome.degraded_reason,
        timings=common_pb2.Timings(inference_ms=outcome.rerank_ms, total_ms=outcome.total_ms),
        **{f"{name}_ms": ms for name, ms in outcome.leg_ms.items()},
        experiment_id=outcome.experiment_id,
    )
