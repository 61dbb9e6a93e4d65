"""Hot-swap: alias flips under load drop no request; damaged versions are refused, the old one serves."""

from __future__ import annotations

import threading
import time

import grpc
import pytest

from services.proto.feedrank.v1 import reranker_pb2, reranker_pb2_grpc
from tests.conftest import admin_metadata
from tests.reranker.test_service import _request


def _wait_for(stub, predicate, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        info = stub.GetInfo(reranker_pb2.GetRerankerInfoRequest(), timeout=5)
        if predicate(info):
            return info
        time.sleep(0.1)
    raise AssertionError(f"condition not reached; last info: {info}")


def test_five_swaps_under_load_fail_no_request(reranker_process, registry):
    first, second = [m.version_id for m in registry.versions()]
    server = reranker_process(FEEDRANK_ENGINE__CACHE_ENTRIES="0")
    failures: list[str] = []
    served: set[str] = set()
    stop = threading.Event()
    request = _request(4)  # built here: a skip (no SciFact data) must reach pytest, not die in a thread

    def hammer() -> None:
        with grpc.insecure_channel(server.target) as channel:
            stub = reranker_pb2_grpc.RerankerStub(channel)
            while not stop.is_set():
                try:
                    served.add(stub.Rerank(request, timeout=30).model_version)
                except grpc.RpcError as err:
                    failures.append(f"{err.code()}: {err.details()}")

    clients = [threading.Thread(target=hammer) for _ in range(4)]
    for c in clients:
        c.start()
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = reranker_pb2_grpc.RerankerStub(channel)
            for swap in range(5):
                target = second if swap % 2 == 0 else first
                registry.set_alias("champion", target, f"test swap {swap}")
                _wait_for(stub, lambda info, t=target: info.aliases["champion"] == t)
                time.sleep(0.3)
            info = stub.GetInfo(reranker_pb2.GetRerankerInfoRequest(), timeout=5)
    finally:
        stop.set()
        for c in clients:
            c.join()
    assert not failures, failures[:5]
    assert served == {first, second}
    assert info.swap_count >= 6  # the first load plus five swaps
    assert info.aliases["champion"] == second


def test_corrupt_version_is_refused_and_old_one_keeps_serving(reranker_process, registry):
    champion, other = registry.aliases()["champion"], [m.version_id for m in registry.versions()][1]
    onnx = registry.root / "versions" / other / "model.onnx"
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx.write_bytes(bytes(data))
    server = reranker_process()
    with grpc.insecure_channel(server.target) as channel:
        stub = reranker_pb2_grpc.RerankerStub(channel)
        registry.set_alias("champion", other, "try a damaged version")
        info = _wait_for(stub, lambda i: "checksum" in i.last_reload_error)
        assert info.aliases["champion"] == champion
        assert stub.Rerank(_request(3), timeout=30).model_version == champion


def test_truncated_version_is_refused(reranker_process, registry):
    champion, other = registry.aliases()["champion"], [m.version_id for m in registry.versions()][1]
    (registry.root / "versions" / other / "tokenizer.json").write_text("{")
    server = reranker_process()
    with grpc.insecure_channel(server.target) as channel:
        stub = reranker_pb2_grpc.RerankerStub(channel)
        registry.set_alias("champion", other, "try a truncated version")
        info = _wait_for(stub, lambda i: bool(i.last_reload_error))
        assert other in info.last_reload_error and info.aliases["champion"] == champion


def test_challenger_and_version_ids_can_be_asked_for(reranker_process, registry):
    other = [m.version_id for m in registry.versions()][1]
    registry.set_alias("challenger", other, "test")
    server = reranker_process()
    with grpc.insecure_channel(server.target) as channel:
        stub = reranker_pb2_grpc.RerankerStub(channel)
        assert stub.Rerank(_request(3, model="challenger"), timeout=30).model_version == other
        # A version id is an operator's choice: the admin token (the reranker made the data dir's admin.token).
        with pytest.raises(grpc.RpcError) as err:
            stub.Rerank(_request(3, model=other), timeout=30)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED and "model" in err.value.details()
        admin = admin_metadata(server.env["FEEDRANK_DATA_DIR"])
        assert stub.Rerank(_request(3, model=other), timeout=30, metadata=admin).model_version == other


def test_model_published_event_triggers_the_swap(reranker_process, registry, tmp_path):
    from kafka import KafkaProducer

    from services.common.config import KafkaSettings
    from services.kafka.connection import ensure_topics, producer_config
    from services.devstack.broker import DevKafka
    from services.proto.feedrank.v1 import feedback_pb2

    other = [m.version_id for m in registry.versions()][1]
    with DevKafka(tmp_path / "kafka") as broker:
        kafka = broker.kafka_settings(KafkaSettings())
        ensure_topics(kafka)
        # The registry watch is slowed to an hour: only the Kafka event can cause this swap.
        server = reranker_process(FEEDRANK_ENGINE__WATCH_INTERVAL_S="3600", FEEDRANK_KAFKA__BOOTSTRAP_SERVERS=broker.bootstrap_servers)
        registry.set_alias("champion", other, "promoted")
        event = feedback_pb2.ModelPublished(version_id=other, alias="champion", manifest_sha256=registry.manifest_digest(other))
        producer = KafkaProducer(**producer_config(kafka))
        producer.send(kafka.topics.models, key=b"global", value=event.SerializeToString()).get(timeout=30)
        producer.close()
        with grpc.insecure_channel(server.target) as channel:
            stub = reranker_pb2_grpc.RerankerStub(channel)
            _wait_for(stub, lambda info: info.aliases["champion"] == other, timeout=90)
            assert stub.Rerank(_request(2), timeout=30).model_version == other
