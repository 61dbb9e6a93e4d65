"""Search, corpora and user feedback."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from services.gateway import convert, schemas
from services.gateway.deps import SettingsDep, UpstreamsDep, rate_limited
from services.proto.feedrank.v1 import feedback_pb2, retriever_pb2

router = APIRouter(tags=["search"])


@router.post("/search", response_model=schemas.SearchReply, summary="Hybrid search (Retriever.Search)")
async def search(body: schemas.SearchBody, upstreams: UpstreamsDep, settings: SettingsDep) -> dict:
    response = await upstreams.call(upstreams.retriever.Search, convert.search_request(body),
                                    service="retriever", timeout=settings.gateway.search_timeout_s)
    return convert.search_reply(response)


@router.get("/corpora", summary="Corpora the retriever serves (Retriever.ListCorpora)")
async def corpora(upstreams: UpstreamsDep) -> dict:
    response = await upstreams.call(upstreams.retriever.ListCorpora, retriever_pb2.ListCorporaRequest(),
                                    service="retriever")
    return {"corpora": [{"corpus_id": c.corpus_id, "documents": c.documents} for c in response.corpora]}


@router.post("/api/telemetry/event", response_model=schemas.Accepted, dependencies=[Depends(rate_limited)],
             summary="Record a click or a rating (Feedback.Record); rate-limited per client")
async def telemetry_event(body: schemas.TelemetryEvent, upstreams: UpstreamsDep) -> dict:
    request = feedback_pb2.RecordRequest(events=[convert.feedback_event(body)])
    reply = await upstreams.call(upstreams.feedback.Record, request, service="feedback",
                                 rename=convert.feedback_field)
    return {"accepted": reply.accepted, "spooled": reply.spooled}
