"""Drop-in rerank APIs over Reranker.Rerank: Cohere's v2, Hugging Face TEI's, and the `/v1/rerank`
of Jina, Voyage and Mixedbread.

Every dialect goes through `_rerank`: the caller's model name resolved by `reranking.model_map`,
documents cut by `max_tokens_per_doc` when the dialect has it, one Rerank call. Scores are the
served version's, which for feedrank's one-label cross-encoders are sigmoid probabilities (the
registry manifest's activation); TEI's `raw_scores` asks for the logit, so it is recovered here by
the inverse sigmoid. feedrank bills nothing: the token counts other APIs report under `usage` are 0.
"""

from __future__ import annotations

import json
import math
import uuid

from fastapi import APIRouter

from services.common.config import Settings
from services.common.errors import invalid
from services.common.rpc_errors import Rename
from services.gateway import schemas
from services.gateway.deps import SettingsDep, UpstreamsDep
from services.gateway.upstreams import Upstreams
from services.proto.feedrank.v1 import reranker_pb2
from services.registry.store import ALIASES, is_generated_version_id

router = APIRouter(tags=["compatible rerank"])
_EPS = 1e-7  # keeps the logit of a saturated sigmoid finite
_NO_USAGE = {"total_tokens": 0}


def served_model(name: str, settings: Settings) -> str:
    """The alias or version id that serves another API's model name (see `reranking.model_map`)."""
    names = settings.reranking.model_map
    if not name:  # TEI takes no name, Mixedbread's is optional: the reranker's default serves them
        return ""
    if name in names:
        return names[name]
    if name in ALIASES or is_generated_version_id(name):
        return name
    if "default" in names:
        return names["default"]
    raise invalid("model", f"unknown model {name!r}: name it in reranking.model_map or give the map a \"default\"")


async def _rerank(upstreams: Upstreams, settings: Settings, model: str, query: str, texts: list[str], *,
                  top_n: int = 0, truncate: bool = True, max_tokens_per_doc: int = 0,
                  rename: Rename | None = None) -> reranker_pb2.RerankResponse:
    request = reranker_pb2.RerankRequest(
        query=query, top_n=top_n, model=served_model(model, settings), truncate=truncate,
        max_tokens_per_doc=max_tokens_per_doc,
        documents=[reranker_pb2.RerankDocument(id=str(i), text=text) for i, text in enumerate(texts)],
    )
    return await upstreams.call(upstreams.reranker.Rerank, request, service="reranker", rename=rename)


@router.post("/v2/rerank", response_model=schemas.CohereReply,
             summary="Cohere v2 rerank: the cohere SDK's ClientV2.rerank works against this gateway")
async def cohere_rerank(body: schemas.CohereRerankBody, upstreams: UpstreamsDep,
                        settings: SettingsDep) -> dict:
    response = await _rerank(upstreams, settings, body.model, body.query, body.documents,
                             top_n=body.top_n or 0, max_tokens_per_doc=body.max_tokens_per_doc or 0)
    return {
        "id": str(uuid.uuid4()),
        "results": [{"index": r.index, "relevance_score": r.score} for r in response.results],
        "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1},
                 "warnings": [] if response.model_version else ["no model version served this request"]},
    }


def _texts_field(field: str) -> str:
    return field.replace("documents", "texts", 1)


@router.post("/rerank", response_model=list[schemas.TeiRank], response_model_exclude_none=True,
             summary="TEI rerank: a bare array of {index, score, text?}, best first")
async def tei_rerank(body: schemas.TeiRerankBody, upstreams: UpstreamsDep,
                     settings: SettingsDep) -> list[dict]:
    if not body.texts:
        raise invalid("texts", "`texts` cannot be empty")
    # TEI serves one model and takes no name: the default mapping serves it.
    response = await _rerank(upstreams, settings, "", body.query, body.texts,
                             truncate=True if body.truncate is None else body.truncate, rename=_texts_field)
    out = []
    for r in response.results:
        score = r.score
        if body.raw_scores:
            p = min(max(score, _EPS), 1 - _EPS)
            score = math.log(p / (1 - p))
        out.append({"index": r.index, "score": score, "text": body.texts[r.index] if body.return_text else None})
    return out


def _text_of(document: str | dict, rank_fields: list[str] | None) -> str:
    """A document's text: a string as is; Jina's {"text": ...}; an object's `rank_fields` (Mixedbread), joined;
    any other object as its JSON."""
    if isinstance(document, str):
        return document
    if rank_fields:
        return "\n".join(str(document[k]) for k in rank_fields if k in document)
    if isinstance(document.get("text"), str):
        return document["text"]
    return json.dumps(document, ensure_ascii=False, sort_keys=True)


def dialect(body: schemas.V1RerankBody) -> str:
    """Jina, Voyage and Mixedbread share `/v1/rerank`; their field names tell them apart."""
    if body.input is not None:
        return "mixedbread"
    if body.top_k is not None or body.truncation is not None:
        return "voyage"
    return "jina"


@router.post("/v1/rerank", summary="Jina, Voyage and Mixedbread rerank (told apart by their field names)")
async def v1_rerank(body: schemas.V1RerankBody, upstreams: UpstreamsDep, settings: SettingsDep) -> dict:
    kind = dialect(body)
    if kind == "mixedbread":
        return await _mixedbread(body, upstreams, settings)
    return await _jina_or_voyage(kind, body, upstreams, settings)


@router.post("/v1/reranking", summary="Mixedbread rerank: {model, query, input, top_k, return_input}")
async def mixedbread_rerank(body: schemas.V1RerankBody, upstreams: UpstreamsDep,
                            settings: SettingsDep) -> dict:
    return await _mixedbread(body, upstreams, settings)


async def _jina_or_voyage(kind: str, body: schemas.V1RerankBody, upstreams: Upstreams,
                          settings: Settings) -> dict:
    if not body.documents:
        raise invalid("documents", "at least one document is required")
    if kind == "voyage" and body.top_k is not None and body.top_k < 1:
        raise invalid("top_k", "must be at least 1 (or left out for every document)")
    texts = [_text_of(d, None) for d in body.documents]
    top = body.top_n if kind == "jina" else body.top_k
    response = await _rerank(upstreams, settings, body.model, body.query, texts, top_n=top or 0,
                             truncate=body.truncation is not False)
    if kind == "jina":  # Jina returns the documents unless told not to; Voyage only when asked
        keep = body.return_documents is not False
        results = [{"index": r.index, "relevance_score": r.score, **({"document": {"text": texts[r.index]}}
                                                                     if keep else {})} for r in response.results]
        return {"model": body.model, "usage": _NO_USAGE, "results": results}
    keep = bool(body.return_documents)
    data = [{"index": r.index, "relevance_score": r.score, **({"document": texts[r.index]} if keep else {})}
            for r in response.results]
    return {"object": "list", "data": data, "model": body.model, "usage": _NO_USAGE}


async def _mixedbread(body: schemas.V1RerankBody, upstreams: Upstreams, settings: Settings) -> dict:
    if not body.input:
        raise invalid("input", "at least one document is required")
    texts = [_text_of(d, body.rank_fields) for d in body.input]
    top = len(texts) if body.top_k in (None, -1) else body.top_k
    if top < 1:
        raise invalid("top_k", "must be at least 1 (or -1 for every document)")
    response = await _rerank(upstreams, settings, body.model, body.query, texts, top_n=top,
                             rename=_input_field)
    data = [{"index": r.index, "score": r.score, "object": "rank_result",
             **({"input": body.input[r.index]} if body.return_input else {})} for r in response.results]
    return {"object": "list", "model": body.model, "top_k": top, "return_input": body.return_input, "data": data,
            "usage": {"prompt_tokens": 0, **_NO_USAGE}}


def _input_field(field: str) -> str:
    return field.replace("documents", "input", 1)
