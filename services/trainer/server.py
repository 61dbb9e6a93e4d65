"""gRPC adapter over TrainerCore (`feedrank.v1.Trainer`) and the server bootstrap."""

from __future__ import annotations

import asyncio
import json
import logging

from services.common.config import Settings
from services.common.errors import ErrorKind, FeedrankError, invalid
from services.common.grpc_server import GrpcApp, bind_address, metrics_port_for
from services.proto.feedrank.v1 import trainer_pb2, trainer_pb2_grpc
from services.trainer.core import TrainerCore
from services.trainer.online.verdicts import experiment_message
from services.trainer.runs import STATUSES, TERMINAL, RunRecord

log = logging.getLogger(__name__)

SERVICE = trainer_pb2.DESCRIPTOR.services_by_name["Trainer"].full_name
ADMIN_METHODS = (
    "Train", "Promote", "Rollback", "CancelRun", "Mine", "StartExperiment", "StopExperiment",
    "Evaluate",  # minutes of CPU
)
_STATUS_ENUM = {name: i + 1 for i, name in enumerate(STATUSES)}  # queued=1 ... interrupted=6


def run_message(record: RunRecord) -> trainer_pb2.Run:
    return trainer_pb2.Run(
        run_id=record.run_id, corpus_id=record.corpus_id, status=_STATUS_ENUM[record.status],
        created_at=record.created_at, finished_at=record.finished_at, error=record.error,
        settings={k: v if isinstance(v, str) else json.dumps(v) for k, v in record.settings.items()},
        metrics={k: float(v) for k, v in record.metrics.items()}, triplet_files=record.triplet_files,
        version_id=record.version_id, base_model=record.base_model, data=flat_data(record.data),
    )


def flat_data(data: dict) -> dict[str, float]:
    """{"triplets": 9, "by_source": {"qrels": 8}} -> {"triplets": 9.0, "by_source.qrels": 8.0}.

    Only numbers fit the proto's map; text entries (e.g. which split chose the blend) stay in run.json.
    """
    out: dict[str, float] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": float(v) for k, v in value.items() if isinstance(v, (int, float))})
        elif isinstance(value, (int, float)):
            out[key] = float(value)
    return out


def decision_message(decision: dict) -> trainer_pb2.PromoteResponse:
    return trainer_pb2.PromoteResponse(
        promoted=decision["promoted"], champion=decision["champion"], reason=decision["reason"],
        numbers={k: float(v) for k, v in decision["numbers"].items()},
    )


class TrainerServicer(trainer_pb2_grpc.TrainerServicer):
    def __init__(self, core: TrainerCore, poll_s: float = 0.2):
        self.core = core
        self.poll_s = poll_s
        self._evaluating = asyncio.Lock()

    async def Mine(self, request, context):
        if not request.corpus_id:
            raise invalid("corpus_id", "required")
        result = await asyncio.to_thread(self.core.mine, request.corpus_id, list(request.sources),
                                         request.golden_path, request.qrels_split)
        return trainer_pb2.MineResponse(mining_run_id=result.mining_run_id, triplets_by_source=result.counts,
                                        files=result.files)

    async def Train(self, request, context):
        if not request.corpus_id:
            raise invalid("corpus_id", "required")
        run_id = await asyncio.to_thread(self.core.train, request.corpus_id, request.start_from,
                                         list(request.triplet_files), dict(request.overrides))
        return trainer_pb2.TrainResponse(run_id=run_id)

    async def GetRun(self, request, context):
        return run_message(self.core.get_run(request.run_id))

    async def ListRuns(self, request, context):
        return trainer_pb2.ListRunsResponse(runs=[run_message(r) for r in self.core.list_runs(request.corpus_id)])

    async def CancelRun(self, request, context):
        return run_message(self.core.cancel_run(request.run_id))

    async def StreamRunMetrics(self, request, context):
        """Replays metrics.jsonl from its start, then follows it until the run ends."""
        runs = self.core.runs
        runs.get(request.run_id)  # NOT_FOUND before the stream starts
        path = runs.metrics_path(request.run_id)
        offset = 0
        while True:
            finished = runs.get(request.run_id).status in TERMINAL  # read before the file: no line is missed
            with path.open("rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits for the next poll
            offset += len(complete)
            for line in complete.splitlines():
                row = json.loads(line)
                yield trainer_pb2.RunMetric(run_id=request.run_id, step=row["step"], epoch=row["epoch"],
                                            name=row["name"], value=row["value"], status=row["status"])
            if finished and len(complete) == len(chunk):
                return
            await asyncio.sleep(self.poll_s)

    async def Evaluate(self, request, context):
        if not request.corpus_id:
            raise invalid("corpus_id", "required")
        # Single flight: each evaluation loads two models and scores the whole eval set; a second one at the
        # same time is refused rather than queued, so callers cannot pile up the trainer's memory.
        if self._evaluating.locked():
            raise FeedrankError(ErrorKind.RESOURCE_EXHAUSTED, "an evaluation is already running; retry when it ends")
        async with self._evaluating:
            result = await asyncio.to_thread(self.core.evaluate, request.corpus_id, request.challenger,
                                             request.champion)
        return trainer_pb2.EvaluateResponse(
            eval_id=result["eval_id"], champion_metrics=result["metrics"]["champion"],
            challenger_metrics=result["metrics"]["challenger"], ndcg_gain=result["ndcg_gain"],
            p_value=result["p_value"],
        )

    async def Promote(self, request, context):
        decision = await asyncio.to_thread(self.core.promote, request.corpus_id, request.version_id, request.force)
        return decision_message(decision)

    async def Rollback(self, request, context):
        return decision_message(await asyncio.to_thread(self.core.rollback, request.corpus_id))

    async def StartExperiment(self, request, context):
        share = request.share if request.HasField("share") else None
        experiment = await asyncio.to_thread(self.core.start_experiment, request.corpus_id,
                                             request.challenger_version, share, request.query_budget,
                                             request.shadow)
        return experiment_message(experiment)

    async def GetExperiment(self, request, context):
        return experiment_message(await asyncio.to_thread(self.core.experiment, request.corpus_id),
                                  request.with_progress)

    async def StopExperiment(self, request, context):
        return experiment_message(await asyncio.to_thread(self.core.stop_experiment, request.corpus_id,
                                                          request.reason))

    async def EventStats(self, request, context):
        stats = await asyncio.to_thread(self.core.event_stats)
        return trainer_pb2.EventStatsResponse(**stats)


def build_app(settings: Settings, core: TrainerCore, port: int | None = None) -> GrpcApp:
    bind, chosen = bind_address(settings.endpoints.trainer, settings.endpoints.bind_host, port)
    return GrpcApp(
        "trainer", [SERVICE],
        lambda server: trainer_pb2_grpc.add_TrainerServicer_to_server(TrainerServicer(core), server),
        settings=settings, bind=bind, admin_methods=ADMIN_METHODS,
        grace_seconds=settings.endpoints.grace_seconds,
        metrics_port=metrics_port_for(chosen, settings.endpoints.metrics_port_offset),
    )
