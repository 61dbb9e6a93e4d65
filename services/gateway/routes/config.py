"""Run-time fusion and reranking settings of the retriever (Retriever.GetConfig / UpdateConfig)."""

from __future__ import annotations

from fastapi import APIRouter

from services.gateway import convert, schemas
from services.gateway.deps import AdminDep, UpstreamsDep
from services.proto.feedrank.v1 import retriever_pb2

router = APIRouter(tags=["config"])


def _strip(group: str):
    # The retriever names "fusion.rrf_k"; this route's body has "rrf_k".
    return lambda field: field.removeprefix(f"{group}.")


@router.get("/config/reranking", summary="The retriever's reranking settings")
async def get_reranking(upstreams: UpstreamsDep) -> dict:
    config = await upstreams.call(upstreams.retriever.GetConfig, retriever_pb2.GetConfigRequest(),
                                  service="retriever")
    return convert.reranking_config(config.reranking)


@router.patch("/config/reranking", summary="Change reranking settings; persisted by the retriever (admin)")
async def patch_reranking(body: schemas.RerankingPatch, auth: AdminDep, upstreams: UpstreamsDep) -> dict:
    config = await upstreams.call(upstreams.retriever.UpdateConfig, convert.update_request("reranking", body),
                                  service="retriever", authorization=auth, rename=_strip("reranking"))
    return convert.reranking_config(config.reranking)


@router.get("/config/fusion", summary="The retriever's fusion settings")
async def get_fusion(upstreams: UpstreamsDep) -> dict:
    config = await upstreams.call(upstreams.retriever.GetConfig, retriever_pb2.GetConfigRequest(),
                                  service="retriever")
    return convert.fusion_config(config.fusion)


@router.patch("/config/fusion", summary="Change fusion settings; persisted by the retriever (admin)")
async def patch_fusion(body: schemas.FusionPatch, auth: AdminDep, upstreams: UpstreamsDep) -> dict:
    config = await upstreams.call(upstreams.retriever.UpdateConfig, convert.update_request("fusion", body),
                                  service="retriever", authorization=auth, rename=_strip("fusion"))
    return convert.fusion_config(config.fusion)
