"""Drop-in rerank APIs over Reranker.Rerank: Cohere's v2 and Hugging Face TEI's.

Scores are the served version's, which for feedrank's one-label cross-encoders are sigmoid
probabilities (the registry manifest's activation); TEI's `raw_scores` asks for the logit, so it
is recovered here by the inverse sigmoid.
"""

from __future__ import annotations

import math
import uuid

from fastapi import APIRouter

from services.common.errors import invalid
from services.gateway import schemas
from services.gateway.deps import BackendsDep
from services.proto.feedrank.v1 import reranker_pb2

router = APIRouter(tags=["compatible rerank"])
_EPS = 1e-7  # keeps the logit of a saturated sigmoid finite


def _texts_field(field: str) -> str:
    return field.replace("documents", "texts", 1)


@router.post("/v2/rerank", response_model=schemas.CohereReply,
             summary="Cohere v2 rerank: the cohere SDK's ClientV2.rerank works against this gateway")
async def cohere_rerank(body: schemas.CohereRerankBody, b: BackendsDep) -> dict:
    request = reranker_pb2.RerankRequest(
        query=body.query, top_n=body.top_n or 0, model=body.model, truncate=True,
        documents=[reranker_pb2.RerankDocument(id=str(i), text=text) for i, text in enumerate(body.documents)],
    )
    response = await b.call(b.reranker.Rerank, request, service="reranker")
    return {
        "id": str(uuid.uuid4()),
        "results": [{"index": r.index, "relevance_score": r.score} for r in response.results],
        "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1},
                 "warnings": [] if response.model_version else ["no model version served this request"]},
    }


@router.post("/rerank", response_model=list[schemas.TeiRank], response_model_exclude_none=True,
             summary="TEI rerank: a bare array of {index, score, text?}, best first")
async def tei_rerank(body: schemas.TeiRerankBody, b: BackendsDep) -> list[dict]:
    if not body.texts:
        raise invalid("texts", "`texts` cannot be empty")
    request = reranker_pb2.RerankRequest(
        query=body.query, truncate=True if body.truncate is None else body.truncate, return_text=body.return_text,
        documents=[reranker_pb2.RerankDocument(id=str(i), text=text) for i, text in enumerate(body.texts)],
    )
    response = await b.call(b.reranker.Rerank, request, service="reranker", rename=_texts_field)
    out = []
    for r in response.results:
        score = r.score
        if body.raw_scores:
            p = min(max(score, _EPS), 1 - _EPS)
            score = math.log(p / (1 - p))
        out.append({"index": r.index, "score": score, "text": r.text if body.return_text else None})
    return out
