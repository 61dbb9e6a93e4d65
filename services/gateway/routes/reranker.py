"""The reranker's model lifecycle: the seed's routes over Reranker.GetInfo and the Trainer service.

Three routes read the shared data dir instead of an RPC, because the trainer keeps these only as
files: `evals/latest.json` (the last evaluation), `evals/e*.json` (every evaluation, for the
metrics-by-version chart) and `runs/<run_id>/train.log` (a run's log).
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import AsyncIterator

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from services.common.errors import FeedrankError, invalid, not_found
from services.gateway import convert, schemas
from services.gateway.deps import AdminDep, SettingsDep, UpstreamsDep
from services.proto.feedrank.v1 import reranker_pb2, trainer_pb2
from services.registry.store import GLOBAL, check_scope, pick

router = APIRouter(tags=["reranker"])
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # fullmatch: "$" would accept a trailing newline


def _run_id(value: str, field: str = "run_id") -> str:
    if not _RUN_ID.fullmatch(value):  # it becomes a path under runs/: no separators, no dot-dot
        raise invalid(field, "must be a run id (letters, digits, '.', '_', '-')")
    return value


@router.get("/reranker/info", summary="Served versions, aliases, limits (Reranker.GetInfo)")
async def info(upstreams: UpstreamsDep) -> dict:
    return convert.to_dict(await upstreams.call(upstreams.reranker.GetInfo,
                                                reranker_pb2.GetRerankerInfoRequest(), service="reranker"))


@router.get("/reranker/status", summary="A corpus's champion and challenger with their metrics, every corpus's "
            "aliases, and the latest run")
async def status(upstreams: UpstreamsDep,
                 corpus_id: str = Query("", description="Corpus whose served aliases to show "
                                                        "(empty: the global, corpus-neutral ones)")) -> dict:
    check_scope(corpus_id)
    info = await upstreams.call(upstreams.reranker.GetInfo, reranker_pb2.GetRerankerInfoRequest(),
                                service="reranker")
    loaded = {v.version_id: convert.to_dict(v) for v in info.loaded}
    scopes = {GLOBAL: dict(info.aliases), **{c: dict(a.aliases) for c, a in info.corpus_aliases.items()}}
    served = {alias: pick(scopes, corpus_id, alias) for alias in ("champion", "challenger")}
    models = {alias: loaded.get(version, {"version_id": version}) if version else None
              for alias, version in served.items()}
    out = {"mode": info.mode, "corpus_id": corpus_id, "aliases": dict(info.aliases),
           "corpus_aliases": {c: a for c, a in scopes.items() if c}, "champion": models["champion"],
           "challenger": models["challenger"], "last_reload_error": info.last_reload_error,
           "latest_run": None, "trainer_error": ""}
    # The page stays useful while the trainer is down: the serving side answers on its own.
    try:
        runs = await upstreams.call(upstreams.trainer.ListRuns, trainer_pb2.ListRunsRequest(),
                                    service="trainer")
    except FeedrankError as err:
        out["trainer_error"] = str(err)
    else:
        if runs.runs:
            out["latest_run"] = convert.run_dict(max(runs.runs, key=lambda r: (r.created_at, r.run_id)))
    return out


@router.post("/reranker/mine", summary="Mine triplets from events, golden questions or qrels (admin)")
async def mine(body: schemas.MineBody, auth: AdminDep, upstreams: UpstreamsDep,
               settings: SettingsDep) -> dict:
    request = trainer_pb2.MineRequest(corpus_id=body.corpus_id, sources=body.sources, golden_path=body.golden_path,
                                      qrels_split=body.qrels_split)
    response = await upstreams.call(upstreams.trainer.Mine, request, service="trainer",
                                    timeout=settings.gateway.admin_timeout_s, authorization=auth)
    return convert.to_dict(response)


@router.post("/reranker/train", summary="Start a training run; returns its run_id at once (admin)")
@router.post("/reranker/train/start", summary="Alias of POST /reranker/train (admin)")
async def train(body: schemas.TrainBody, auth: AdminDep, upstreams: UpstreamsDep) -> dict:
    request = trainer_pb2.TrainRequest(corpus_id=body.corpus_id, start_from=body.start_from,
                                       triplet_files=body.triplet_files, overrides=body.overrides)
    response = await upstreams.call(upstreams.trainer.Train, request, service="trainer", authorization=auth)
    return {"run_id": response.run_id}


@router.get("/reranker/train/runs", summary="Training runs, newest first")
async def runs(upstreams: UpstreamsDep, corpus_id: str = "") -> dict:
    response = await upstreams.call(upstreams.trainer.ListRuns,
                                    trainer_pb2.ListRunsRequest(corpus_id=corpus_id), service="trainer")
    ordered = sorted(response.runs, key=lambda r: (r.created_at, r.run_id), reverse=True)
    return {"runs": [convert.run_dict(r) for r in ordered]}


@router.get("/reranker/train/runs/diff", summary="Settings, metrics and data of two runs side by side")
async def runs_diff(upstreams: UpstreamsDep, a: str = Query(description="First run id"),
                    b_: str = Query(alias="b", description="Second run id")) -> dict:
    first = await upstreams.call(upstreams.trainer.GetRun, trainer_pb2.GetRunRequest(run_id=_run_id(a, "a")),
                                 service="trainer")
    second = await upstreams.call(upstreams.trainer.GetRun,
                                  trainer_pb2.GetRunRequest(run_id=_run_id(b_, "b")), service="trainer")
    return convert.runs_diff(first, second)


@router.get("/reranker/train/run/{run_id}", summary="One run's status, settings and metrics")
async def run(run_id: str, upstreams: UpstreamsDep) -> dict:
    response = await upstreams.call(upstreams.trainer.GetRun,
                                    trainer_pb2.GetRunRequest(run_id=_run_id(run_id)), service="trainer")
    return convert.run_dict(response)


@router.post("/reranker/train/run/{run_id}/cancel", summary="Cancel a queued or running run (admin)")
async def cancel(run_id: str, auth: AdminDep, upstreams: UpstreamsDep) -> dict:
    response = await upstreams.call(upstreams.trainer.CancelRun,
                                    trainer_pb2.CancelRunRequest(run_id=_run_id(run_id)), service="trainer",
                                    authorization=auth)
    return convert.run_dict(response)


@router.get("/reranker/train/run/{run_id}/metrics", response_class=StreamingResponse,
            summary="Server-Sent Events: the run's metrics from its start, live until it ends")
async def run_metrics(run_id: str, upstreams: UpstreamsDep, settings: SettingsDep) -> StreamingResponse:
    request = trainer_pb2.StreamRunMetricsRequest(run_id=_run_id(run_id))
    # An unknown run is a 404 here, before the 200 of the stream is sent.
    await upstreams.call(upstreams.trainer.GetRun, trainer_pb2.GetRunRequest(run_id=run_id),
                         service="trainer")

    async def events() -> AsyncIterator[str]:
        status = ""
        try:
            async for metric in upstreams.stream(upstreams.trainer.StreamRunMetrics, request,
                                                 service="trainer",
                                                 timeout=settings.gateway.stream_timeout_s):
                status = metric.status
                yield f"event: metric\ndata: {json.dumps(convert.to_dict(metric))}\n\n"
        except FeedrankError as err:  # the 200 is gone: the failure travels as an event
            yield f"event: error\ndata: {json.dumps({'code': err.kind.value, 'message': str(err)})}\n\n"
            return
        # The trainer ends the stream once the run is over; its last metric carries the final status.
        yield f"event: end\ndata: {json.dumps({'status': status})}\n\n"

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.post("/reranker/evaluate", summary="Evaluate challenger vs champion on the frozen eval set (admin; one at a time)")
async def evaluate(body: schemas.EvaluateBody, auth: AdminDep, upstreams: UpstreamsDep,
                   settings: SettingsDep) -> dict:
    request = trainer_pb2.EvaluateRequest(corpus_id=body.corpus_id, challenger=body.challenger, champion=body.champion)
    response = await upstreams.call(upstreams.trainer.Evaluate, request, service="trainer",
                                    timeout=settings.gateway.admin_timeout_s, authorization=auth)
    return convert.to_dict(response)


@router.get("/api/reranker/eval/latest", summary="The last evaluation the trainer recorded")
async def eval_latest(settings: SettingsDep) -> dict:
    path = settings.data_path / "evals" / "latest.json"
    if not path.is_file():
        raise not_found("no evaluation has been run yet")
    return json.loads(path.read_text())


@router.get("/api/reranker/evals/versions", summary="nDCG@10 and MRR@10 of each evaluated model version")
async def eval_versions(settings: SettingsDep, corpus_id: str = "") -> dict:
    """Each version's numbers from the newest evaluation that scored it, versions in the order first evaluated."""
    versions: dict[str, dict] = {}
    root = settings.data_path / "evals"
    # Eval ids start with their UTC creation time, so name order is time order.
    for path in sorted(root.glob("e*.json")) if root.is_dir() else []:
        record = json.loads(path.read_text())
        if corpus_id and record.get("corpus_id") != corpus_id:
            continue
        for side in ("champion", "challenger"):
            version = record.get(side, {}).get("version_id", "")
            metrics = record.get("metrics", {}).get(side, {})
            if version and metrics:
                versions[version] = {"version_id": version, "eval_id": record.get("eval_id", path.stem),
                                     "corpus_id": record.get("corpus_id", ""),
                                     **{k: metrics[k] for k in ("ndcg@10", "mrr@10") if k in metrics}}
    return {"versions": list(versions.values())}


@router.get("/api/reranker/logs", summary="The last lines of the trainer's mine/train/eval job output, or of one run's log")
async def logs(settings: SettingsDep, run_id: str = "") -> dict:
    if run_id:
        chosen = _run_id(run_id)
        if not (settings.data_path / "runs" / chosen).is_dir():
            raise not_found(f"run {chosen} not found", "run_id")
        path = settings.data_path / "runs" / chosen / "train.log"
    else:
        chosen, path = "", settings.trainer_log_path
    lines: deque[str] = deque(maxlen=settings.gateway.log_lines)
    if path.is_file():
        with path.open(errors="replace") as fh:
            lines.extend(line.rstrip("\n") for line in fh)
    return {"run_id": chosen, "lines": list(lines)}


@router.post("/api/reranker/promote", summary="Promote a version to champion through the gate (admin)")
async def promote(body: schemas.PromoteBody, auth: AdminDep, upstreams: UpstreamsDep,
                  settings: SettingsDep) -> dict:
    request = trainer_pb2.PromoteRequest(corpus_id=body.corpus_id, version_id=body.version_id, force=body.force)
    response = await upstreams.call(upstreams.trainer.Promote, request, service="trainer",
                                    timeout=settings.gateway.admin_timeout_s, authorization=auth)
    return convert.to_dict(response)


@router.post("/api/reranker/rollback", summary="Restore the previous champion (admin)")
async def rollback(body: schemas.RollbackBody, auth: AdminDep, upstreams: UpstreamsDep) -> dict:
    response = await upstreams.call(upstreams.trainer.Rollback,
                                    trainer_pb2.RollbackRequest(corpus_id=body.corpus_id), service="trainer",
                                    authorization=auth)
    return convert.to_dict(response)
