"""Online experiments on the console: a corpus's experiment with its progress, start and stop (Trainer RPCs)."""

from __future__ import annotations

from fastapi import APIRouter

from services.gateway import convert, schemas
from services.gateway.deps import AdminDep, UpstreamsDep
from services.proto.feedrank.v1 import trainer_pb2
from services.retriever.corpus import check_corpus_id

router = APIRouter(tags=["experiments"])


@router.get("/api/trainer/experiments/{corpus_id}",
            summary="The corpus's running (else latest) online experiment, with its counts and p-value over time")
async def experiment(corpus_id: str, upstreams: UpstreamsDep) -> dict:
    request = trainer_pb2.GetExperimentRequest(corpus_id=check_corpus_id(corpus_id), with_progress=True)
    return convert.to_dict(await upstreams.call(upstreams.trainer.GetExperiment, request, service="trainer"))


@router.post("/api/trainer/experiments/{corpus_id}/start",
             summary="Interleave the corpus's champion with a challenger on live Search (admin)")
async def start(corpus_id: str, body: schemas.ExperimentStartBody, auth: AdminDep,
                upstreams: UpstreamsDep) -> dict:
    request = trainer_pb2.StartExperimentRequest(corpus_id=check_corpus_id(corpus_id),
                                                 challenger_version=body.challenger_version,
                                                 query_budget=body.query_budget)
    if body.share is not None:
        request.share = body.share
    return convert.to_dict(await upstreams.call(upstreams.trainer.StartExperiment, request, service="trainer",
                                                authorization=auth))


@router.post("/api/trainer/experiments/{corpus_id}/stop", summary="Stop the corpus's running experiment (admin)")
async def stop(corpus_id: str, body: schemas.ExperimentStopBody, auth: AdminDep,
               upstreams: UpstreamsDep) -> dict:
    request = trainer_pb2.StopExperimentRequest(corpus_id=check_corpus_id(corpus_id), reason=body.reason)
    return convert.to_dict(await upstreams.call(upstreams.trainer.StopExperiment, request, service="trainer",
                                                authorization=auth))
