"""An online experiment end to end on the real stack: Search interleaves the corpus's champion and challenger,
the clicks travel through Feedback and Kafka to the trainer's ledger, and the sequential test decides; a
challenger removed mid-experiment fails no search and the retriever stops the experiment with the reason."""

from __future__ import annotations

import time
import uuid

import grpc
import pytest
from kafka import KafkaConsumer

from services.client import Feedrank
from services.client.retry import Retry
from services.client.types import Click
from services.common.config import InterleavingSettings, KafkaSettings
from services.kafka.connection import consumer_config
from services.proto.feedrank.v1 import reranker_pb2, reranker_pb2_grpc, trainer_pb2, trainer_pb2_grpc
from services.registry.store import FileRegistry
from tests.feedback.helpers import wait_until
from tests.gateway.conftest import ADMIN_TOKEN, CORPUS
from tests.gateway.test_console import browser, page, shots  # noqa: F401 (fixtures)

AUTH = (("authorization", f"Bearer {ADMIN_TOKEN}"),)
QUERIES = ["pet cats", "volcanic eruptions", "bank interest", "algorithms", "lava rock", "savings money"]


@pytest.fixture
def online(stack):
    """(trainer stub, the Python client, the challenger's version id) with the challenger alias set for the
    corpus and served; afterwards no experiment runs and the alias is gone, as the other tests expect."""
    registry = FileRegistry(stack.data_dir / "registry")
    champion = registry.resolve("champion", CORPUS)
    before = registry.aliases(CORPUS).get("challenger")
    challenger = next(m.version_id for m in registry.versions() if m.version_id != champion)
    registry.update_aliases(CORPUS, {"challenger": challenger}, "test: online experiment")
    reranker = reranker_pb2_grpc.RerankerStub(grpc.insecure_channel(stack.env["FEEDRANK_ENDPOINTS__RERANKER"]))

    def challenger_served() -> bool:
        request = reranker_pb2.RerankRequest(query="cats", model="challenger", corpus_id=CORPUS,
                                             documents=[reranker_pb2.RerankDocument(id="a", text="cats purr")])
        return reranker.Rerank(request, timeout=30, metadata=AUTH).model_version == challenger

    wait_until(challenger_served, 60, "the reranker to serve the challenger alias")
    trainer = trainer_pb2_grpc.TrainerStub(grpc.insecure_channel(stack.env["FEEDRANK_ENDPOINTS__TRAINER"]))
    client = Feedrank(stack.env["FEEDRANK_ENDPOINTS__RETRIEVER"], stack.env["FEEDRANK_ENDPOINTS__FEEDBACK"],
                      token=ADMIN_TOKEN, timeout_s=60, retry=Retry(attempts=1), source="simulator")
    yield trainer, client, challenger
    client.close()
    try:
        trainer.StopExperiment(trainer_pb2.StopExperimentRequest(corpus_id=CORPUS, reason="test over"), timeout=30,
                               metadata=AUTH)
    except grpc.RpcError:
        pass  # already ended
    registry.update_aliases(CORPUS, {"challenger": before}, "test: online experiment over")


def start(trainer, **fields) -> trainer_pb2.Experiment:
    return trainer.StartExperiment(trainer_pb2.StartExperimentRequest(corpus_id=CORPUS, **fields), timeout=30,
                                   metadata=AUTH)


def status(trainer) -> trainer_pb2.Experiment:
    return trainer.GetExperiment(trainer_pb2.GetExperimentRequest(corpus_id=CORPUS), timeout=30)


def search(client, i: int):
    return client.search(CORPUS, QUERIES[i % len(QUERIES)], top_k=6, session_id=uuid.uuid4().hex)


def test_searches_are_interleaved_clicks_credited_from_kafka_and_the_test_decides(
        stack, online, client, page, shots):  # noqa: F811
    http = client
    trainer, users, challenger = online
    experiment = start(trainer, share=1.0, query_budget=400)
    assert experiment.challenger_version == challenger and experiment.state == "running"
    interleaved, i = [], 0
    # Simulated users who prefer the challenger: each clicks the challenger's first contribution.
    while status(trainer).state == "running":
        assert i < 400, "the experiment did not decide"
        results = search(users, i)
        i += 1
        if not results.experiment_id:
            time.sleep(0.1)  # the retriever has not heard of the experiment yet
            continue
        assert results.experiment_id == experiment.experiment_id
        teams = [hit.team for hit in results]
        assert set(teams) <= {"champion", "challenger"} and "challenger" in teams
        assert len({hit.doc_id for hit in results}) == len(results)
        interleaved.append(results.query_id)
        results.click(next(hit.doc_id for hit in results if hit.team == "challenger"))
    decided = status(trainer)
    assert decided.state == "win" and decided.wins > 0 and decided.losses == 0
    assert decided.p_value <= decided.alpha and f"{decided.wins} wins" in decided.reason
    assert decided.wins + decided.ties <= len(interleaved)
    # The shown list is the merged one: the impressions the trainer stored carry the teams and the id.
    store = stack.events()
    try:
        logged = {e.query_id: e.event.impression for e in store.impressions(CORPUS) if e.query_id in interleaved}
    finally:
        store.close()
    assert logged and all(i.experiment_id == experiment.experiment_id and all(r.team for r in i.results)
                          for i in logged.values())
    # Kept with the version's history; reported, not promoted (loop.auto_promote_online is off).
    registry = FileRegistry(stack.data_dir / "registry")
    [note] = [r for r in registry.history(CORPUS) if r.get("judge") == "online" and r["numbers"]["state"] == "win"]
    assert note["to"] == challenger and note["numbers"]["wins"] == decided.wins
    assert registry.resolve("champion", CORPUS) != challenger
    # ... and published: the start and the verdict on interleaving.decisions_topic, keyed by corpus.
    assert {(e.experiment_id, e.state) for e in _decisions(stack)} >= {(experiment.experiment_id, "running"),
                                                                      (experiment.experiment_id, "win")}
    # A click naming an experiment nobody runs is stored, not credited (the ledger counts it).
    first = results.hits[0]
    stray = users.feedback(results.query_id, Click(first.doc_id, rank=first.rank), experiment_id="no-such")
    assert stray.accepted == 1
    wait_until(lambda: any(e.event.experiment_id == "no-such" for e in _clicks(stack)), 60, "the stray click stored")
    assert status(trainer).wins == decided.wins
    # The console's live panel: the counts and p-value over time, from the gateway's route.
    shown = http.get(f"/api/trainer/experiments/{CORPUS}").json()
    assert shown["state"] == "win" and shown["progress"] and shown["progress"][-1]["wins"] == str(decided.wins)
    page.goto(f"{stack.url}/ui/reranker.html")
    page.fill("#corpus", CORPUS)
    page.wait_for_function("document.querySelector('#experiment-label').textContent.endsWith('win')", timeout=30_000)
    assert int(page.get_attribute("#experiment-counts", "data-points")) >= 1
    page.screenshot(path=str(shots / "experiment.png"), full_page=True)


def _decisions(stack) -> list[trainer_pb2.Experiment]:
    kafka = KafkaSettings(bootstrap_servers=stack.env["FEEDRANK_KAFKA__BOOTSTRAP_SERVERS"])
    consumer = KafkaConsumer(**consumer_config(kafka, f"test-{uuid.uuid4().hex[:8]}"))
    consumer.subscribe([InterleavingSettings().decisions_topic])
    try:
        seen: list[trainer_pb2.Experiment] = []

        def read_both() -> bool:
            for records in consumer.poll(timeout_ms=500).values():
                seen.extend(trainer_pb2.Experiment.FromString(r.value) for r in records if r.key == CORPUS.encode())
            return any(e.state == "win" for e in seen)

        wait_until(read_both, 60, "the experiment's verdict on the decisions topic")
        return seen
    finally:
        consumer.close()


def _clicks(stack):
    store = stack.events()
    try:
        return list(store.clicks(CORPUS))
    finally:
        store.close()


def test_a_challenger_removed_mid_experiment_fails_no_search_and_the_experiment_stops(stack, online):
    trainer, client, challenger = online
    experiment = start(trainer, share=1.0)

    def interleaving() -> bool:
        return search(client, 0).experiment_id == experiment.experiment_id

    wait_until(interleaving, 60, "an interleaved search")
    FileRegistry(stack.data_dir / "registry").update_aliases(CORPUS, {"challenger": None}, "test: challenger gone")
    served = 0
    while status(trainer).state == "running":
        assert served < 300, "the experiment was not stopped"
        results = search(client, served)  # raises on a failed search
        served += 1
        assert len(results) > 0 and not results.degraded_reason
    stopped = status(trainer)
    assert stopped.state == "stopped" and "in a row" in stopped.reason and challenger in stopped.reason
    assert not search(client, 1).experiment_id
