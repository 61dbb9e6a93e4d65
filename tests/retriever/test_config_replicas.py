"""Runtime config (UpdateConfig, the gateway's PATCH /config/*) reaches every replica on one data dir.

Two real `python -m services.retriever` processes serve one data dir, as the retriever Deployment's
replicas share the `feedrank-data` volume. An UpdateConfig sent to one changes the other's answers, and
updates sent to different replicas both survive (neither overwrites the other's change).
"""

from __future__ import annotations

import shutil
import time

import grpc
import pytest

from services.common.config import EndpointSettings, Settings
from services.proto.feedrank.v1 import retriever_pb2, retriever_pb2_grpc
from services.retriever.core import RetrieverCore
from services.retriever.runtime_config import RuntimeConfig
from tests.conftest import ServiceProcess, admin_metadata
from tests.retriever.conftest import DOCS

UNREACHABLE = "127.0.0.1:1"


@pytest.fixture
def corpus_dir(tmp_path, embedder_dir, embedder):
    data = tmp_path / "data"
    shutil.copytree(embedder_dir, data / "models" / "embedder")
    settings = Settings(data_dir=str(data)).replace(endpoints=EndpointSettings(metrics_port_offset=0))
    core = RetrieverCore(settings, embedder=embedder)
    core.ingest("tiny", DOCS)
    core.close()
    return data


@pytest.fixture
def replicas(corpus_dir):
    env = {"FEEDRANK_ENDPOINTS__RERANKER": UNREACHABLE, "FEEDRANK_ENDPOINTS__FEEDBACK": UNREACHABLE,
           "FEEDRANK_RETRIEVAL__IMPRESSION_SAMPLE_RATE": "0", "FEEDRANK_RETRIEVAL__CONFIG_REFRESH_S": "0.2",
           "FEEDRANK_LOG_JSON": "false"}
    started = []
    try:
        for _ in range(2):
            started.append(ServiceProcess("retriever", corpus_dir, env).start(timeout_s=180))
        yield started
    finally:
        for proc in started:
            proc.stop()


def _search(stub) -> retriever_pb2.SearchResponse:
    return stub.Search(retriever_pb2.SearchRequest(corpus_id="tiny", query="cats", rerank_mode="none"), timeout=30)


def _eventually(check, what: str, timeout_s: float = 60.0):
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"the other replica never saw {what}")
        time.sleep(0.1)


def test_update_config_on_one_replica_changes_the_answers_of_the_other(replicas, corpus_dir):
    a, b = replicas
    admin = admin_metadata(corpus_dir)  # UpdateConfig changes what is served: an admin call
    with grpc.insecure_channel(a.target) as ca, grpc.insecure_channel(b.target) as cb:
        stub_a, stub_b = retriever_pb2_grpc.RetrieverStub(ca), retriever_pb2_grpc.RetrieverStub(cb)
        # RRF scores are below 2/61; weighted min-max puts the best document near vector + sparse weight.
        assert _search(stub_b).results[0].legs.fused_score < 0.05

        stub_a.UpdateConfig(retriever_pb2.UpdateConfigRequest(
            fusion=retriever_pb2.FusionConfig(method=retriever_pb2.FUSION_METHOD_WEIGHTED, vector_weight=0.8),
            update_mask=["fusion.method", "fusion.vector_weight"]), timeout=30, metadata=admin)
        _eventually(lambda: _search(stub_b).results[0].legs.fused_score > 0.05, "the fusion change in its searches")
        seen = stub_b.GetConfig(retriever_pb2.GetConfigRequest(), timeout=30)
        assert seen.fusion.method == retriever_pb2.FUSION_METHOD_WEIGHTED
        assert seen.fusion.vector_weight == pytest.approx(0.8)

        # A change sent to B is merged onto A's (the file is re-read under the lock, not B's cached copy).
        stub_b.UpdateConfig(retriever_pb2.UpdateConfigRequest(
            reranking=retriever_pb2.RerankingConfig(tribrid_reranker_topn=7),
            update_mask=["reranking.tribrid_reranker_topn"]), timeout=30, metadata=admin)

        def a_has_both():
            config = stub_a.GetConfig(retriever_pb2.GetConfigRequest(), timeout=30)
            return config.reranking.tribrid_reranker_topn == 7 and config
        both = _eventually(a_has_both, "B's reranking change")
        assert both.fusion.method == retriever_pb2.FUSION_METHOD_WEIGHTED and both.fusion.vector_weight == pytest.approx(0.8)


def test_a_replica_that_did_not_refresh_yet_still_merges_onto_the_latest_file(tmp_path):
    """Two configs on one file, the second stale: its update keeps the first one's change."""
    base = Settings()
    path = tmp_path / "retriever" / "config.json"
    first = RuntimeConfig(path, base.fusion, base.reranking, refresh_s=3600)
    stale = RuntimeConfig(path, base.fusion, base.reranking, refresh_s=3600)
    first.update({"method": "weighted"}, {})
    fusion, reranking = stale.update({}, {"tribrid_reranker_topn": 7})
    assert fusion.method == "weighted" and reranking.tribrid_reranker_topn == 7
    assert first.generation == 1 and stale.generation == 2


def test_a_broken_config_file_keeps_the_last_good_settings(tmp_path, caplog):
    base = Settings()
    path = tmp_path / "retriever" / "config.json"
    config = RuntimeConfig(path, base.fusion, base.reranking, refresh_s=0)
    config.update({"method": "weighted"}, {})
    path.write_text('{"generation": 9, "fusion": {"rrf_k": -1}, "reranking": {}}')
    assert config.fusion.method == "weighted"
    assert "fusion.rrf_k" in caplog.text
