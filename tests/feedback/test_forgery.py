"""Forged feedback through the real feedback service and broker: refused, counted, and never trained on."""

from __future__ import annotations

import uuid

import grpc
import httpx
import pytest

from services.common.config import KafkaSettings, KafkaTopics
from services.events.consumer import EventConsumer
from services.events.store import EventStore
from services.proto.feedrank.v1 import feedback_pb2
from services.trainer.candidates import FileCandidates
from services.trainer.mining import Miner, judge_log, load_triplets
from tests.conftest import free_port
from tests.feedback.conftest import service_env
from tests.feedback.helpers import SIGNER, make_event, now_ms, wait_until
from tests.trainer.conftest import build_corpus, make_settings

QUERY = "how do bees make honey"
SHOWN = ["bees-1", "bees-2", "bees-0", "owls-0", "owls-1"]
TARGET = "rust-2"  # the document an attacker wants at the top: never shown for these queries


def _event(query_id: str, session: str, source: str = "test", **kind) -> feedback_pb2.FeedbackEvent:
    return feedback_pb2.FeedbackEvent(event_id=uuid.uuid4().hex, query_id=query_id, session_id=session,
                                      timestamp_ms=now_ms(), source=source, **kind)


def _impression(query_id: str, docs: list[str], corpus: str = "tiny", query: str = QUERY):
    return _event(query_id, "retriever-session", source="retriever", impression=feedback_pb2.Impression(
        corpus_id=corpus, query=query, results=[feedback_pb2.ShownResult(doc_id=d, rank=r)
                                                for r, d in enumerate(docs, 1)]))


def _click(query_id: str, doc_id: str, rank: int, session: str = "user") -> feedback_pb2.FeedbackEvent:
    return _event(query_id, session, click=feedback_pb2.Click(doc_id=doc_id, rank=rank, dwell_ms=60_000))


@pytest.fixture
def service(memory_kafka, start_feedback, tmp_path):
    grpc_port, metrics_port = free_port(), free_port()
    topic = f"forgery-{uuid.uuid4().hex[:8]}"
    env = service_env(tmp_path / "svc", memory_kafka.bootstrap_servers, topic,
                      FEEDRANK_ENDPOINTS__METRICS_PORT_OFFSET=str(metrics_port - grpc_port),
                      FEEDRANK_FEEDBACK__MAX_STREAM_BYTES="4096")
    proc = start_feedback(env, port=grpc_port)
    proc.topic, proc.metrics_port = topic, metrics_port
    wait_until(lambda: proc.info().broker_connected, 30, "the service to reach the broker")
    return proc


def _refused(service, events) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as refused:
        service.stub.Record(feedback_pb2.RecordRequest(events=events), timeout=10)
    return refused.value


def _rejected(service, reason: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{service.metrics_port}/metrics", timeout=5).text
    line = f'feedrank_feedback_events_rejected_total{{reason="{reason}"}} '
    return next((float(x[len(line):]) for x in text.splitlines() if x.startswith(line)), 0.0)


def test_forged_feedback_is_refused_naming_the_field(service):
    qid = SIGNER.sign("tiny", QUERY, SHOWN, now_ms() / 1000)
    service.stub.Record(feedback_pb2.RecordRequest(events=[_impression(qid, SHOWN), _click(qid, "bees-0", 3)]),
                        timeout=10)
    cases = [
        ([_click(qid, TARGET, 1)], "events[0].click.doc_id", "doc_not_shown"),
        ([_click(qid[:-3] + ("AAA" if not qid.endswith("AAA") else "BBB"), "bees-0", 3)],
         "events[0].query_id", "query_id_invalid"),
        ([_click(str(uuid.uuid4()), "bees-0", 3)], "events[0].query_id", "query_id_invalid"),
        ([_impression(qid, [TARGET, *SHOWN[1:]])], "events[0].impression.results", "impression_forged"),
        ([_impression(SIGNER.sign("tiny", "another query", SHOWN, now_ms() / 1000), SHOWN)],
         "events[0].impression.query", "impression_forged"),
    ]
    for events, field, reason in cases:
        before = _rejected(service, reason)
        error = _refused(service, events)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert field in error.details()
        assert _rejected(service, reason) == before + 1
    # A batch with one forged event records none of it, the honest events included.
    error = _refused(service, [_click(qid, "bees-1", 1), _click(qid, TARGET, 2)])
    assert "events[1].click.doc_id" in error.details()
    assert service.info().events_accepted == 2


def test_stream_past_its_byte_limit_is_refused_and_earlier_events_are_kept(service, tmp_path):
    qid = SIGNER.sign("tiny", QUERY, SHOWN, now_ms() / 1000)
    kept = [_impression(qid, SHOWN), _click(qid, "bees-0", 3)]
    assert service.stub.RecordStream(iter(kept), timeout=10).accepted == 2
    big = [_click(qid, "bees-1", 1, session="s" * 200) for _ in range(30)]  # ~260 bytes each, 4096 allowed
    with pytest.raises(grpc.RpcError) as refused:
        service.stub.RecordStream(iter(big), timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "max_stream_bytes" in refused.value.details() and "events[" in refused.value.details()
    assert _rejected(service, "stream_bytes") == 1
    assert service.info().events_accepted == 2
    store = EventStore(tmp_path / "check" / "events.sqlite3")
    consumer = EventConsumer(KafkaSettings(bootstrap_servers=service.env["FEEDRANK_KAFKA__BOOTSTRAP_SERVERS"],
                                           topics=KafkaTopics(feedback=service.topic),
                                           consumer_group=f"c-{uuid.uuid4().hex[:6]}"), store)
    consumer.start()
    try:
        wait_until(lambda: store.count() >= 2, 60, "the acknowledged events in the store")
        assert store.event_ids() == {e.event_id for e in kept}
    finally:
        consumer.stop()
        store.close()


def _mined(store: EventStore, data_dir):
    settings = make_settings(data_dir, mining={"propensity_weights": True})
    judgements, _ = judge_log(list(store.impressions("tiny")), list(store.clicks("tiny")),
                              list(store.ratings("tiny")), settings.training, set())
    result = Miner(settings, FileCandidates(settings.training.candidates_file), store).mine("tiny", ["events"])
    triplets = sorted((t.query, t.positive_doc_id, t.weight) for t in load_triplets(result.files))
    return sorted((j.query_id, sorted(j.positives.items()), j.negatives) for j in judgements), triplets


def test_a_thousand_forged_clicks_change_nothing_that_is_trained(service, tmp_path, data_dir):
    """Signed searches that never showed TARGET, honest clicks on them, and 1,000 forged clicks
    promoting TARGET on those very query_ids: the trained labels are those of the honest log."""
    build_corpus(data_dir, extra_queries=[QUERY])
    honest: list[feedback_pb2.FeedbackEvent] = []
    query_ids = []
    for i in range(10):
        qid = SIGNER.sign("tiny", QUERY, SHOWN, now_ms() / 1000)
        query_ids.append(qid)
        honest += [_impression(qid, SHOWN), _click(qid, SHOWN[2], 3, session=f"u{i}")]
    for start in range(0, len(honest), 10):
        service.stub.Record(feedback_pb2.RecordRequest(events=honest[start:start + 10]), timeout=10)

    refused = 0
    for i in range(1000):
        qid = query_ids[i % len(query_ids)]
        forged = [_click(qid, TARGET, 1 + i % 5, session=f"bot{i}")]
        if i % 100 == 0:  # now and then with an impression claiming TARGET was shown
            forged.insert(0, _impression(qid, [TARGET, *SHOWN[1:]]))
        try:
            service.stub.Record(feedback_pb2.RecordRequest(events=forged), timeout=10)
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
            refused += 1
    assert refused == 1000

    kafka = KafkaSettings(bootstrap_servers=service.env["FEEDRANK_KAFKA__BOOTSTRAP_SERVERS"],
                          topics=KafkaTopics(feedback=service.topic), consumer_group=f"c-{uuid.uuid4().hex[:6]}")
    attacked = EventStore(tmp_path / "attacked" / "events.sqlite3")
    consumer = EventConsumer(kafka, attacked)
    consumer.start()
    try:
        marker_qid = SIGNER.sign("tiny", "marker", ["bees-0"], now_ms() / 1000)
        service.stub.Record(feedback_pb2.RecordRequest(events=[make_event("marker", "click", query_id=marker_qid,
                                                                          doc_id="bees-0", rank=1)]), timeout=10)
        wait_until(lambda: attacked.get("marker") is not None, 60, "the marker after every attempt")
    finally:
        consumer.stop()
    clean = EventStore(tmp_path / "clean" / "events.sqlite3")
    clean.add(honest)
    assert attacked.event_ids() == {e.event_id for e in honest} | {"marker"}
    judged_attacked, triplets_attacked = _mined(attacked, data_dir)
    judged_clean, triplets_clean = _mined(clean, data_dir)
    assert judged_attacked == judged_clean and triplets_attacked == triplets_clean
    assert triplets_clean and all(t[1] != TARGET for t in triplets_attacked)
    attacked.close()
    clean.close()
