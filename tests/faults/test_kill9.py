"""kill -9 under load: the reranker, the trainer, the feedback service, the broker and a retriever replica,
one after another.

The retriever runs as two replicas on one data dir; the client reaches them through one round_robin
channel with a retry policy for UNAVAILABLE (tests/faults/conftest.py RetrieverReplicas). A client thread
keeps searching and recording clicks on what it found. A click counts as acknowledged only when
Feedback.Record returned OK; a failed Record is retried with the same event_ids, as a real client would.
Throughout: Search never fails (while the reranker is down it answers in the fused order with
degraded_reason set; while a retriever replica is down the other one answers), the restarted reranker
serves the champion again and follows an alias flip made under load, the restarted retriever replica
serves again, and at the end every acknowledged event is in the trainer's event store once.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid

import grpc
import pytest

from services.events.store import EventStore
from services.proto.feedrank.v1 import feedback_pb2, feedback_pb2_grpc, retriever_pb2, retriever_pb2_grpc
from services.registry.store import FileRegistry
from tests.faults.conftest import CORPUS, RetrieverReplicas, queries, start_stack, wait_until

_CHANNEL_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 200), ("grpc.max_reconnect_backoff_ms", 1000)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory, registry_template):
    root = tmp_path_factory.mktemp("kill9")
    # Real cross-encoders: the champion and a second version, whose alias flip is seen in
    # SearchResponse.model_version.
    shutil.copytree(registry_template, root / "data" / "registry")
    registry = FileRegistry(root / "data" / "registry")
    # Durable broker storage (SeaweedFS under Tansu): a broker killed with -9 keeps what it acknowledged.
    # The retriever is not one of the stack's processes: it runs as two replicas on the stack's data dir.
    retrievers = RetrieverReplicas(2)
    stack = start_stack(root, {
        "FEEDRANK_FEEDBACK__RETRY_INTERVAL_S": "0.5",
        "FEEDRANK_RERANKING__RERANKER_TIMEOUT": "10",
        "FEEDRANK_ENGINE__WATCH_INTERVAL_S": "0.5",
        "FEEDRANK_ENDPOINTS__RETRIEVER": retrievers.endpoint,  # the trainer's candidate source
    }, durable_kafka=True, services=("reranker", "feedback", "trainer"))
    try:
        stack.retrievers = retrievers.start(stack)
        stack.registry = registry
        yield stack
    finally:
        retrievers.stop()
        stack.stop()


class Traffic(threading.Thread):
    """Search, then record a click on the top hit; searches and acknowledged clicks are counted."""

    def __init__(self, retrievers: RetrieverReplicas, feedback: str):
        super().__init__(daemon=True)
        self._channels = [
            grpc.insecure_channel(retrievers.target, options=[*_CHANNEL_OPTIONS, *RetrieverReplicas.CHANNEL_OPTIONS]),
            grpc.insecure_channel(feedback, options=_CHANNEL_OPTIONS),
        ]
        self.search = retriever_pb2_grpc.RetrieverStub(self._channels[0]).Search
        self.record = feedback_pb2_grpc.FeedbackStub(self._channels[1]).Record
        self.lock = threading.Lock()
        self.acked: set[str] = set()
        self.sent: set[str] = set()
        self.search_errors: list[str] = []
        self.searches = 0
        self.degraded: list[str] = []  # degraded_reason of each degraded search, in order
        self.reranked: list[str] = []  # model_version of each reranked search, in order
        self.record_failures = 0
        self._halt = threading.Event()

    def counts(self) -> tuple[int, int, int]:
        with self.lock:
            return len(self.acked), len(self.degraded), len(self.reranked)

    def searched(self) -> int:
        with self.lock:
            return self.searches

    def search_only(self, halt: threading.Event) -> None:
        """More searches on the same channel (no clicks), so calls are in flight when a replica dies."""
        texts = queries()
        i = 0
        while not halt.is_set():
            i += 1
            self._search_once(texts[i % len(texts)], f"load{i}")

    def _search_once(self, query: str, session_id: str):
        """One Search; a failure is recorded and None returned."""
        try:
            response = self.search(retriever_pb2.SearchRequest(
                corpus_id=CORPUS, query=query, top_k=5, session_id=session_id), timeout=30)
        except grpc.RpcError as err:
            with self.lock:
                self.search_errors.append(f"{err.code().name}: {err.details()}")
            return None
        with self.lock:
            self.searches += 1
        return response

    def reranked_by(self, version: str, since: int) -> int:
        with self.lock:
            return sum(1 for v in self.reranked[since:] if v == version)

    def run(self) -> None:
        texts = queries()
        i = 0
        while not self._halt.is_set():
            i += 1
            response = self._search_once(texts[i % len(texts)], f"s{i}")
            if response is None:
                continue
            with self.lock:
                if response.degraded_reason and (response.reranked or not response.results):
                    self.search_errors.append(f"degraded search not in the fused order: {response}")
                elif response.degraded_reason:
                    self.degraded.append(response.degraded_reason)
                elif response.reranked:
                    self.reranked.append(response.model_version)
            top = response.results[0]
            event = feedback_pb2.FeedbackEvent(
                event_id=uuid.uuid4().hex, query_id=response.query_id, session_id=f"s{i}",
                timestamp_ms=int(time.time() * 1000), source="faults",
                click=feedback_pb2.Click(doc_id=top.doc_id, rank=top.rank, dwell_ms=5000))
            self.sent.add(event.event_id)
            while not self._halt.is_set():
                try:
                    self.record(feedback_pb2.RecordRequest(events=[event]), timeout=10)
                except grpc.RpcError:
                    self.record_failures += 1
                    time.sleep(0.2)
                    continue
                with self.lock:
                    self.acked.add(event.event_id)
                break

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(60)
        for channel in self._channels:
            channel.close()


def test_search_and_acknowledged_feedback_survive_kill_9_of_each_part(stack):
    retrievers: RetrieverReplicas = stack.retrievers
    traffic = Traffic(retrievers, stack.target("feedback"))
    store_file = stack.data_dir / "events" / "events.sqlite3"

    def more(n: int, what: str, timeout_s: float = 120) -> None:
        target = traffic.counts()[0] + n
        wait_until(lambda: traffic.counts()[0] >= target, timeout_s, f"{n} more acknowledged clicks {what}")

    def restart(name: str) -> None:
        stack.start_service(name)
        stack.wait_healthy(name, 180)

    def searches_by_each_replica() -> list[float]:
        return [retrievers.searches_served(i) for i in range(len(retrievers.processes))]

    def more_searches(n: int, what: str) -> None:
        target = traffic.searched() + n
        wait_until(lambda: traffic.searched() >= target, 120, f"{n} more searches {what}")

    first, second = [m.version_id for m in stack.registry.versions()]
    assert stack.registry.aliases()["champion"] == first
    # Replica 0 opens the corpus first, so it loads the vector shard and replica 1 serves a private copy
    # of it (services/retriever/vector/edge.py): step 5 kills the replica that holds the shard.
    for process in retrievers.processes:
        with grpc.insecure_channel(process.target) as channel:
            retriever_pb2_grpc.RetrieverStub(channel).Search(
                retriever_pb2.SearchRequest(corpus_id=CORPUS, query=queries()[0], top_k=5), timeout=60)
    traffic.start()
    try:
        more(10, "at the start")
        assert traffic.reranked_by(first, 0) > 0, "the champion never reranked a search"
        # The balancer spreads the searches: both replicas have answered some beyond the warm-up call.
        wait_until(lambda: min(searches_by_each_replica()) > 3, 60, "searches on both retriever replicas")

        # 1. the reranker: searches degrade to the fused order, then recover once it is back.
        stack.processes["reranker"].proc.kill()
        stack.processes["reranker"].proc.wait(10)
        degraded_before = traffic.counts()[1]
        wait_until(lambda: traffic.counts()[1] > degraded_before + 2, 120, "searches degraded by the dead reranker")
        more(3, "with the reranker down")
        restart("reranker")
        since = traffic.counts()[2]
        wait_until(lambda: traffic.reranked_by(first, since) > 2, 120, "searches reranked again after the restart")
        # ... and the restarted reranker follows an alias flip made while the searches go on.
        since = traffic.counts()[2]
        stack.registry.set_alias("champion", second, "swap under load after a kill -9")
        wait_until(lambda: traffic.reranked_by(second, since) > 2, 120, "searches reranked by the new champion")

        # 2. the trainer, which consumes the feedback topic into the event store (offsets not committed).
        stack.processes["trainer"].proc.kill()
        stack.processes["trainer"].proc.wait(10)
        more(10, "with the trainer down")
        restart("trainer")

        # 3. the feedback service: Record fails until it is back; the client retries the same event.
        failures = traffic.record_failures
        stack.processes["feedback"].proc.kill()
        stack.processes["feedback"].proc.wait(10)
        wait_until(lambda: traffic.record_failures > failures, 60, "a Record refused by the dead feedback service")
        restart("feedback")
        more(10, "after the feedback service restarted")

        # 4. the broker: the feedback service spools, and drains the spool when the broker returns.
        stack.kafka.broker.kill()
        more(10, "with the broker down")
        stack.kafka.broker.start()
        more(10, "after the broker restarted")

        # 5. a retriever replica, under extra search load so calls are in flight to it when it dies:
        # the other replica answers them (retried) and every search after them.
        halt = threading.Event()
        load = [threading.Thread(target=traffic.search_only, args=(halt,), daemon=True) for _ in range(2)]
        for thread in load:
            thread.start()
        try:
            more_searches(20, "with both replicas up and the extra load")
            victim = retrievers.processes[0]
            victim.kill()
            survivor_before = retrievers.searches_served(1)
            more_searches(30, "with a retriever replica down")
            more(3, "with a retriever replica down")
            # Every one was served by the survivor; up to one per client thread (3) may have been counted
            # by it before the snapshot above and by the client after.
            assert retrievers.searches_served(1) >= survivor_before + 27, "the surviving replica did not serve them"
            # Restarted on the same port: it loads the shard its killed predecessor held, answers directly,
            # and the balancer sends it calls again while the other replica keeps serving too.
            victim.start(180)
            with grpc.insecure_channel(victim.target) as channel:
                direct = retriever_pb2_grpc.RetrieverStub(channel).Search(
                    retriever_pb2.SearchRequest(corpus_id=CORPUS, query=queries()[1], top_k=5), timeout=60)
            assert direct.results, direct
            restarted_direct, survivor_before = retrievers.searches_served(0), retrievers.searches_served(1)
            wait_until(lambda: retrievers.searches_served(0) > restarted_direct + 5
                       and retrievers.searches_served(1) > survivor_before + 5, 120,
                       "searches through the balancer on the restarted replica and on the other one")
        finally:
            halt.set()
            for thread in load:
                thread.join(60)
    finally:
        traffic.stop()

    assert not traffic.search_errors, traffic.search_errors[:5]
    assert any(reason.startswith("reranker") for reason in traffic.degraded), traffic.degraded[:5]
    assert traffic.record_failures > 0, "the feedback outage never reached the client; the test proved nothing"
    wait_until(store_file.exists, 60, "the trainer to create the event store")
    store = EventStore(store_file, read_only=True)
    try:
        wait_until(lambda: traffic.acked <= store.event_ids(), 180,
                   "every acknowledged click in the trainer's event store")
        stored = store.event_ids()
        assert store.count() == len(stored), "an event_id is stored twice"
        clicks = {e.event_id for e in store.clicks()}
        # Only clicks this client sent (acknowledged or cut off by the halt) are stored: nothing invented.
        assert clicks <= traffic.sent
        assert traffic.acked <= clicks
    finally:
        store.close()
