"""JSON <-> protobuf for the gateway and the MCP server: the one module that knows both shapes."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Any

from google.protobuf.json_format import MessageToDict

from services.common.errors import invalid
from services.gateway import schemas
from services.proto.feedrank.v1 import feedback_pb2, retriever_pb2, trainer_pb2

METHODS = {"rrf": retriever_pb2.FUSION_METHOD_RRF, "weighted": retriever_pb2.FUSION_METHOD_WEIGHTED,
           "dbsf": retriever_pb2.FUSION_METHOD_DBSF}
NORMS = {"minmax": retriever_pb2.NORMALIZATION_MINMAX, "zscore": retriever_pb2.NORMALIZATION_ZSCORE}
_METHOD_NAMES = {v: k for k, v in METHODS.items()}
_NORM_NAMES = {v: k for k, v in NORMS.items()}


def to_dict(message: Any) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


# --- search ----------------------------------------------------------------------------------------

def fusion_message(fusion: schemas.FusionOverride) -> retriever_pb2.FusionConfig:
    # Unset fields stay zero, which the retriever reads as "keep the configured value".
    return retriever_pb2.FusionConfig(
        method=METHODS[fusion.method] if fusion.method else 0,
        rrf_k=fusion.rrf_k or 0.0, vector_weight=fusion.vector_weight or 0.0,
        sparse_weight=fusion.sparse_weight or 0.0,
        normalization=NORMS[fusion.normalization] if fusion.normalization else 0,
    )


def search_request(body: schemas.SearchBody) -> retriever_pb2.SearchRequest:
    request = retriever_pb2.SearchRequest(
        corpus_id=body.corpus_id, query=body.query, top_k=body.top_k, candidate_k=body.candidate_k,
        session_id=body.session_id, model=body.model,
    )
    if body.fusion is not None:
        request.fusion.CopyFrom(fusion_message(body.fusion))
    if body.rerank_mode is not None:
        request.rerank_mode = body.rerank_mode
    return request


def search_reply(response: retriever_pb2.SearchResponse) -> dict[str, Any]:
    return {
        "query_id": response.query_id,
        "results": [
            {"doc_id": r.doc_id, "title": r.title, "snippet": r.snippet, "rank": r.rank,
             "rerank_score": r.rerank_score, "legs": to_dict(r.legs), "team": r.team}
            for r in response.results
        ],
        "model_version": response.model_version,
        "query_adapter_version": response.query_adapter_version,
        "reranked": response.reranked,
        "degraded_reason": response.degraded_reason,
        "experiment_id": response.experiment_id,
        "timings": {**to_dict(response.timings), "lexical_ms": response.lexical_ms, "vector_ms": response.vector_ms},
    }


# --- feedback --------------------------------------------------------------------------------------

def timestamp_ms(value: float | str | None) -> int:
    """ISO-8601, epoch seconds or epoch milliseconds (told apart by size) -> epoch milliseconds."""
    if value is None:
        return int(time.time() * 1000)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise invalid("timestamp", "must be ISO-8601 or unix epoch seconds/milliseconds") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return int(parsed.timestamp() * 1000)
    if not math.isfinite(value) or value < 0 or value > 1e14:
        raise invalid("timestamp", "must be ISO-8601 or unix epoch seconds/milliseconds")
    return int(value * 1000) if value < 1e11 else int(value)  # 1e11 s is the year 5138


def feedback_event(event: schemas.TelemetryEvent) -> feedback_pb2.FeedbackEvent:
    message = feedback_pb2.FeedbackEvent(
        event_id=event.event_id, query_id=event.query_id, session_id=event.session_id,
        timestamp_ms=timestamp_ms(event.timestamp), source=event.source, experiment_id=event.experiment_id,
    )
    kind = event.type or ("rating" if event.rating is not None else "click")
    if kind == "rating":
        if event.rating is None:
            raise invalid("rating", "is required for a rating event")
        message.rating.CopyFrom(feedback_pb2.Rating(doc_id=event.doc_id, rating=event.rating, rank=event.rank))
    elif kind == "click":
        message.click.CopyFrom(feedback_pb2.Click(doc_id=event.doc_id, rank=event.rank, dwell_ms=event.dwell_ms))
    else:  # a kinds-table row the schema accepts but this body has no fields for yet
        raise invalid("type", f"{kind!r} events cannot be sent as telemetry")
    return message


def feedback_field(field: str) -> str:
    """The feedback service names fields of its request ("events[0].click.rank"); the client sent "rank"."""
    for prefix in ("events[0].click.", "events[0].rating.", "events[0]."):
        if field.startswith(prefix):
            field = field[len(prefix):]
            break
    return {"timestamp_ms": "timestamp", "kind": "type"}.get(field, field)


# --- trainer ---------------------------------------------------------------------------------------

def run_dict(run: trainer_pb2.Run) -> dict[str, Any]:
    out = to_dict(run)
    out["status"] = trainer_pb2.RunStatus.Name(run.status).removeprefix("RUN_STATUS_").lower()
    return out


def runs_diff(a: trainer_pb2.Run, b: trainer_pb2.Run) -> dict[str, Any]:
    """Two runs side by side: settings where they differ, every metric, and the run fields."""
    def side(x: dict, y: dict, only_changed: bool) -> dict[str, list[Any]]:
        return {k: [x.get(k), y.get(k)] for k in sorted(set(x) | set(y)) if not only_changed or x.get(k) != y.get(k)}

    da, db = run_dict(a), run_dict(b)
    fields = ("status", "corpus_id", "version_id", "created_at", "finished_at", "error")
    return {
        "runs": [a.run_id, b.run_id],
        "settings": side(dict(a.settings), dict(b.settings), True),
        "metrics": side(dict(a.metrics), dict(b.metrics), False),
        "run": side({k: da[k] for k in fields}, {k: db[k] for k in fields}, False),
        "triplet_files": [len(a.triplet_files), len(b.triplet_files)],
    }


# --- run-time config -------------------------------------------------------------------------------

def fusion_config(message: retriever_pb2.FusionConfig) -> dict[str, Any]:
    return {"method": _METHOD_NAMES.get(message.method, ""), "rrf_k": message.rrf_k,
            "vector_weight": message.vector_weight, "sparse_weight": message.sparse_weight,
            "normalization": _NORM_NAMES.get(message.normalization, "")}


def reranking_config(message: retriever_pb2.RerankingConfig) -> dict[str, Any]:
    return to_dict(message)


def update_request(group: str, patch: schemas.RerankingPatch | schemas.FusionPatch) -> retriever_pb2.UpdateConfigRequest:
    changes = patch.model_dump(exclude_unset=True)
    if not changes:
        raise invalid("body", f"name at least one {group} field to change")
    if any(v is None for v in changes.values()):
        name = next(k for k, v in changes.items() if v is None)
        raise invalid(name, "must not be null")
    request = retriever_pb2.UpdateConfigRequest(update_mask=[f"{group}.{name}" for name in changes])
    if group == "fusion":
        assert isinstance(patch, schemas.FusionPatch)
        request.fusion.CopyFrom(fusion_message(patch))
    else:
        request.reranking.CopyFrom(retriever_pb2.RerankingConfig(**changes))
    return request
