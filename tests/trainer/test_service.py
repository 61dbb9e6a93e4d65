"""The learning path end to end over real processes: a Tansu broker, `python -m services.trainer`
and `python -m services.reranker`.

Events go into Kafka and reach the trainer's event store; Mine, Train (a few real optimizer
steps), StreamRunMetrics, Evaluate, the gate both ways, Promote publishing `ModelPublished` on
Kafka, the reranker serving the new champion, Rollback, and a restart that marks a run interrupted.
Candidates come from a fixed file (see conftest), not a live retriever.
"""

from __future__ import annotations

import json
import time

import grpc
import pytest
from kafka import KafkaConsumer, KafkaProducer

from services.common.config import TrainingSettings
from services.common.errors import ErrorKind, FeedrankError
from services.devstack.broker import DevKafka
from services.kafka.connection import consumer_config, ensure_topics, producer_config
from services.proto.feedrank.v1 import (
    feedback_pb2,
    reranker_pb2,
    reranker_pb2_grpc,
    trainer_pb2,
    trainer_pb2_grpc,
)
from services.registry.store import FileRegistry
from services.trainer.click_log import held_out
from services.trainer.core import TrainerCore
from services.trainer.gate import read_decisions
from services.trainer.judges import agreement
from tests.conftest import admin_metadata
from tests.reranker.conftest import RerankerProcess
from tests.trainer.conftest import build_corpus, make_settings, training_env

TOKEN = "s3cret"
AUTH = [("authorization", f"Bearer {TOKEN}")]


@pytest.fixture
def kafka(tmp_path):
    with DevKafka(tmp_path / "kafka") as dev:
        yield dev


def feedback_events() -> list[feedback_pb2.FeedbackEvent]:
    shown = ["bees-1", "bees-2", "bees-0"]
    return [
        feedback_pb2.FeedbackEvent(event_id="i1", query_id="q1", session_id="s", timestamp_ms=1_700_000_000_000,
                                   impression=feedback_pb2.Impression(corpus_id="tiny", query="how do bees make honey",
                                   results=[feedback_pb2.ShownResult(doc_id=d, rank=r) for r, d in enumerate(shown, 1)])),
        feedback_pb2.FeedbackEvent(event_id="c1", query_id="q1", session_id="s", timestamp_ms=1_700_000_001_000,
                                   click=feedback_pb2.Click(doc_id="bees-0", rank=3, dwell_ms=40_000)),
    ]


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_learning_path_through_the_services(data_dir, kafka, trainer_process):
    build_corpus(data_dir, "tiny", bad_fused=True)
    build_corpus(data_dir, "guard")  # the fused order is already right there
    kafka_settings = kafka.kafka_settings(make_settings(data_dir).kafka)
    ensure_topics(kafka_settings)
    producer = KafkaProducer(**producer_config(kafka_settings))
    for event in feedback_events():
        producer.send(kafka_settings.topics.feedback, key=event.query_id.encode(), value=event.SerializeToString())
    producer.flush(10)
    producer.close()

    trainer = trainer_process(**training_env(data_dir, consume_events="true", gate__min_gain="0.0", gate__max_p="0.1"),
                              FEEDRANK_KAFKA__BOOTSTRAP_SERVERS=kafka.bootstrap_servers,
                              FEEDRANK_ENDPOINTS__ADMIN_TOKEN=TOKEN)
    channel = grpc.insecure_channel(trainer.target)
    stub = trainer_pb2_grpc.TrainerStub(channel)

    # The trainer consumes the feedback topic into its event store.
    stats = wait_for(lambda: (s := stub.EventStats(trainer_pb2.EventStatsRequest(), timeout=5)).total == 2 and s,
                     60, "events in the store")
    assert dict(stats.by_type) == {"impression": 1, "click": 1} and dict(stats.by_corpus) == {"tiny": 2}

    # Admin RPCs want the token; bad input names the field.
    with pytest.raises(grpc.RpcError) as err:
        stub.Mine(trainer_pb2.MineRequest(corpus_id="tiny", sources=["qrels"]), timeout=30)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as err:
        stub.Train(trainer_pb2.TrainRequest(corpus_id="tiny", start_from="yesterday"), timeout=30, metadata=AUTH)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "start_from" in err.value.details()

    mined = stub.Mine(trainer_pb2.MineRequest(corpus_id="tiny", sources=["events", "qrels"]), timeout=60, metadata=AUTH)
    assert dict(mined.triplets_by_source) == {"events": 1, "qrels": 8} and len(mined.files) == 2

    # A tiny real run: returns at once, streams its metrics, registers a challenger.
    run_id = stub.Train(trainer_pb2.TrainRequest(corpus_id="tiny", start_from="base", overrides={"max_steps": "2"}),
                        timeout=30, metadata=AUTH).run_id
    metrics = list(stub.StreamRunMetrics(trainer_pb2.StreamRunMetricsRequest(run_id=run_id), timeout=300))
    losses = [m for m in metrics if m.name == "loss"]
    assert [m.step for m in losses] == [1, 2] and all(m.value > 0 for m in losses)
    assert metrics[-1].name == "status" and metrics[-1].status == "succeeded"
    run = stub.GetRun(trainer_pb2.GetRunRequest(run_id=run_id), timeout=5)
    assert run.status == trainer_pb2.RUN_STATUS_SUCCEEDED, run.error
    assert run.settings["max_steps"] == "2" and sorted(run.triplet_files) == sorted(mined.files)
    registry = FileRegistry(data_dir / "registry")
    assert registry.aliases("tiny") == {"challenger": run.version_id} and registry.aliases() == {}
    manifest = registry.manifest(run.version_id)
    assert manifest.run_id == run_id and manifest.triplets == 9 and manifest.triplet_files == list(run.triplet_files)
    assert (data_dir / "runs" / run_id / "model" / "config.json").is_file()
    assert [r.run_id for r in stub.ListRuns(trainer_pb2.ListRunsRequest(corpus_id="tiny"), timeout=5).runs] == [run_id]

    evaluation = stub.Evaluate(trainer_pb2.EvaluateRequest(corpus_id="tiny"), timeout=300, metadata=AUTH)  # admin
    saved = json.loads((data_dir / "evals" / f"{evaluation.eval_id}.json").read_text())
    assert json.loads((data_dir / "evals" / "latest.json").read_text())["eval_id"] == evaluation.eval_id
    assert saved["champion"]["version_id"] == "fused" and set(saved["metrics"]) == {"fused", "champion", "challenger"}
    assert saved["challenger"] == {"name": "challenger", "version_id": run.version_id, "run_id": run_id}
    assert set(evaluation.challenger_metrics) == {"mrr@10", "hit@1", "hit@3", "hit@5", "hit@10", "recall@10",
                                                  "recall@100", "ndcg@10"}
    # The fused order puts every relevant document 12th: the challenger must do better.
    assert evaluation.ndcg_gain > 0 and evaluation.p_value < 0.1

    # The reranker follows the champion alias; a consumer watches the models topic.
    reranker = RerankerProcess(data_dir / "registry", data_dir).start()
    models = KafkaConsumer(**consumer_config(kafka_settings, "test-models"))
    models.subscribe([kafka_settings.topics.models])
    try:
        rerank = reranker_pb2_grpc.RerankerStub(grpc.insecure_channel(reranker.target))
        served = rerank.GetInfo(reranker_pb2.GetRerankerInfoRequest(), timeout=5).corpus_aliases
        assert served["tiny"].aliases == {"challenger": run.version_id}  # loaded, but no champion yet

        decision = stub.Promote(trainer_pb2.PromoteRequest(corpus_id="tiny"), timeout=300, metadata=AUTH)
        assert decision.promoted and decision.champion == run.version_id, decision.reason
        assert decision.numbers["published"] == 1.0 and decision.numbers["ndcg_gain"] > 0

        def published():
            for records in models.poll(timeout_ms=500).values():
                for record in records:
                    return record
            return None

        record = wait_for(published, 60, "ModelPublished")
        event = feedback_pb2.ModelPublished.FromString(record.value)
        assert record.key == b"tiny" and (event.version_id, event.alias) == (run.version_id, "champion")
        assert event.manifest_sha256 == registry.manifest_digest(run.version_id)

        wait_for(lambda: rerank.GetInfo(reranker_pb2.GetRerankerInfoRequest(), timeout=5).corpus_aliases["tiny"]
                 .aliases.get("champion") == run.version_id, 60, "the reranker to serve the new champion")
        scored = rerank.Rerank(reranker_pb2.RerankRequest(query="bees", corpus_id="tiny", documents=[
            reranker_pb2.RerankDocument(id="a", text="honey bees"), reranker_pb2.RerankDocument(id="b", text="owls")]),
            timeout=10)
        assert scored.model_version == run.version_id
        # tiny's champion serves tiny only: a request for another corpus gets the fused (input) order.
        other = rerank.Rerank(reranker_pb2.RerankRequest(query="bees", corpus_id="guard", documents=[
            reranker_pb2.RerankDocument(id="a", text="honey bees")]), timeout=10)
        assert other.model_version == "none"

        rolled = stub.Rollback(trainer_pb2.RollbackRequest(corpus_id="tiny"), timeout=60, metadata=AUTH)
        assert rolled.promoted and rolled.champion == "fused"
        assert "champion" not in registry.aliases("tiny")
        event = feedback_pb2.ModelPublished.FromString(wait_for(published, 60, "rollback event").value)
        assert event.version_id == "" and event.alias == "champion"
        wait_for(lambda: "champion" not in rerank.GetInfo(reranker_pb2.GetRerankerInfoRequest(), timeout=5)
                 .corpus_aliases["tiny"].aliases, 60, "the reranker to drop the champion")
        with pytest.raises(grpc.RpcError) as err:
            stub.Rollback(trainer_pb2.RollbackRequest(corpus_id="tiny"), timeout=60, metadata=AUTH)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        models.close()
        reranker.stop()
        trainer.stop()
        channel.close()

    # The gate the other way, on the same data in-process: a guard corpus where the fused order is
    # already right makes the same challenger fail, and so does too few triplets.
    for changes, why in [({"gate": {"guard_corpus": "guard"}}, "guard corpus guard loses"),
                         ({"gate": {"min_triplets": 100}}, "fewer than")]:
        core = TrainerCore(make_settings(data_dir, **changes))
        try:
            decision = core.promote("tiny", run.version_id)
        finally:
            core.close()
        assert not decision["promoted"] and why in decision["reason"], decision
        assert "champion" not in registry.aliases("tiny")
    # Judged by clicks, a corpus whose log holds (almost) no held-out session cannot promote: it says how many.
    core = TrainerCore(make_settings(data_dir, judge="clicks"))
    try:
        with pytest.raises(FeedrankError) as refused:
            core.promote("tiny", run.version_id)
    finally:
        core.close()
    held = int(held_out("s", TrainingSettings().judge_holdout_share))  # the log's one session
    assert refused.value.kind == ErrorKind.FAILED_PRECONDITION
    assert f"has {held} held-out sessions" in str(refused.value) and "it needs 50" in str(refused.value)
    decisions = read_decisions(data_dir / "trainer" / "decisions.jsonl")
    assert [d["promoted"] for d in decisions] == [True, True, False, False]
    # Both labelled decisions keep the click judge's verdict beside theirs (here: why it could not give one).
    labelled = [d for d in decisions if d.get("judge") == "labels"]
    assert len(labelled) == 2 and all(d["beside"]["available"] is False and "held-out sessions" in d["beside"]["reason"]
                                       for d in labelled)
    assert agreement(decisions) == {"challengers": 2, "with_click_verdict": 0, "labelled_significant": 0,
                                    "agree_on_sign": 0}
    from prometheus_client import REGISTRY

    assert REGISTRY.get_sample_value("feedrank_gate_decisions_total", {"outcome": "refused"}) >= 2
    assert REGISTRY.get_sample_value("feedrank_eval_metric", {"corpus_id": "guard", "model": "challenger",
                                                              "metric": "ndcg@10"}) is not None
    # The service kept its job output (mining, the run, the gate) for the gateway's logs route.
    jobs = (data_dir / "trainer" / "jobs.log").read_text()
    assert run.run_id in jobs and "services.trainer" in jobs
    assert decisions[2]["numbers"]["guard_delta"] < -0.01 and decisions[2]["numbers"]["ndcg_gain"] > 0


def test_restart_mid_run_marks_it_interrupted(data_dir, trainer_process):
    build_corpus(data_dir)
    trainer = trainer_process(**training_env(data_dir))
    stub = trainer_pb2_grpc.TrainerStub(grpc.insecure_channel(trainer.target))
    admin = admin_metadata(data_dir)  # no endpoints.admin_token: the trainer made the data dir's admin.token
    stub.Mine(trainer_pb2.MineRequest(corpus_id="tiny", sources=["qrels"]), timeout=60, metadata=admin)
    run_id = stub.Train(trainer_pb2.TrainRequest(corpus_id="tiny", start_from="base", overrides={"epochs": "500"}),
                        timeout=30, metadata=admin).run_id
    wait_for(lambda: stub.GetRun(trainer_pb2.GetRunRequest(run_id=run_id), timeout=5).status
             == trainer_pb2.RUN_STATUS_RUNNING, 120, "the run to start")
    trainer.kill()  # no chance to clean up: the record still says running
    assert json.loads((data_dir / "runs" / run_id / "run.json").read_text())["status"] == "running"
    again = trainer_process(**training_env(data_dir))
    stub = trainer_pb2_grpc.TrainerStub(grpc.insecure_channel(again.target))
    run = stub.GetRun(trainer_pb2.GetRunRequest(run_id=run_id), timeout=5)
    assert run.status == trainer_pb2.RUN_STATUS_INTERRUPTED and "restarted" in run.error
    # A late stream replays the whole history and ends with the interruption.
    metrics = list(stub.StreamRunMetrics(trainer_pb2.StreamRunMetricsRequest(run_id=run_id), timeout=30))
    assert [m.status for m in metrics if m.name == "status"] == ["queued", "running", "interrupted"]

    # CancelRun stops a running run at its next step.
    second = stub.Train(trainer_pb2.TrainRequest(corpus_id="tiny", start_from="base", overrides={"epochs": "400"}),
                        timeout=30, metadata=admin).run_id
    wait_for(lambda: stub.GetRun(trainer_pb2.GetRunRequest(run_id=second), timeout=5).status
             == trainer_pb2.RUN_STATUS_RUNNING, 120, "the second run to start")
    stub.CancelRun(trainer_pb2.CancelRunRequest(run_id=second), timeout=5, metadata=admin)
    wait_for(lambda: stub.GetRun(trainer_pb2.GetRunRequest(run_id=second), timeout=5).status
             == trainer_pb2.RUN_STATUS_CANCELLED, 120, "the cancel")
    assert not (data_dir / "runs" / second / "model").exists()

    # The CLI over the same RPCs: list and a side-by-side diff.
    from typer.testing import CliRunner

    from services.cli import app
    from services.trainer import cli as trainer_cli

    trainer_cli.console.width = 250  # rich would wrap the run ids at the default 80 columns
    listed = CliRunner().invoke(app, ["runs", "list", "--target", again.target], terminal_width=200)
    assert listed.exit_code == 0 and run_id in listed.output and second in listed.output
    diffed = CliRunner().invoke(app, ["runs", "diff", run_id, second, "--target", again.target], terminal_width=200)
    assert diffed.exit_code == 0, diffed.output
    assert "settings epochs" in diffed.output and "500" in diffed.output and "400" in diffed.output
    assert "interrupted" in diffed.output and "cancelled" in diffed.output
    with pytest.raises(grpc.RpcError) as err:
        stub.Train(trainer_pb2.TrainRequest(corpus_id="tiny", triplet_files=["/etc/passwd"]), timeout=30, metadata=admin)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "triplet_files" in err.value.details()
