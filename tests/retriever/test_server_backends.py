"""The server-backed pair chosen by config: OpenSearch (here noida-db's Elasticsearch-compatible
emulator) for BM25 and qdrant-client (here its `:memory:` mode) for vectors, through the same core."""

from __future__ import annotations

import asyncio

import pytest
from qdrant_client import QdrantClient

from services.common.config import EndpointSettings, Settings
from services.common.errors import FeedrankError
from services.proto.feedrank.v1 import feedback_pb2_grpc
from services.retriever.backends import Corpora
from services.retriever.core import RetrieverCore
from services.retriever.domain import SearchQuery
from tests.retriever.conftest import DOCS, RecordingFeedback, start_stub_server


def _settings(data_dir, **retrieval) -> Settings:
    base = Settings(data_dir=str(data_dir))
    return base.replace(
        endpoints=EndpointSettings(reranker="127.0.0.1:1", feedback="127.0.0.1:1", metrics_port_offset=0),
        retrieval=base.retrieval.model_copy(update=retrieval),
    )


def test_opensearch_and_qdrant_chosen_by_config(seeded_data_dir, embedder, noida_es_url):
    settings = _settings(
        seeded_data_dir, lexical_backend="opensearch", vector_backend="qdrant", opensearch_url=noida_es_url,
        opensearch_index_prefix="cfgtest-",
    )
    corpora = Corpora(settings.retrieval, settings.data_path, qdrant=QdrantClient(":memory:"))
    core = RetrieverCore(settings, corpora=corpora, embedder=embedder)
    report = core.ingest("tiny", DOCS)
    assert report.added == len(DOCS)
    corpus = core.corpora.get("tiny")
    assert type(corpus.lexical).__name__ == "OpenSearchIndex" and corpus.lexical.index == "cfgtest-tiny"
    assert type(corpus.vector).__name__ == "QdrantIndex"
    assert corpus.lexical.count() == corpus.vector.count() == len(DOCS)

    async def search():
        try:
            return await core.search(SearchQuery("tiny", "mortgage loan on a house", top_k=3, rerank_mode="none"))
        finally:
            await core.aclose()

    outcome = asyncio.run(search())
    top = outcome.hits[0]
    assert top.doc_id == "bank-2" and top.fused.leg("lexical").rank == 1 and top.fused.leg("vector").rank >= 1
    corpus.lexical.drop()

    # The same corpus opened with the embedded backends is refused: its indexes live elsewhere.
    embedded = RetrieverCore(_settings(seeded_data_dir), embedder=embedder)
    with pytest.raises(FeedrankError) as err:
        embedded.corpora.get("tiny")
    assert "re-ingest" in str(err.value)


def test_impressions_follow_the_sample_rate(seeded_data_dir, embedder):
    feedback = RecordingFeedback()

    async def scenario(rate):
        server, target = await start_stub_server(
            lambda s: feedback_pb2_grpc.add_FeedbackServicer_to_server(feedback, s)
        )
        base = _settings(seeded_data_dir, impression_sample_rate=rate)
        settings = base.replace(endpoints=base.endpoints.model_copy(update={"feedback": target}))
        core = RetrieverCore(settings, embedder=embedder)
        try:
            if not core.corpora.ids():
                core.ingest("tiny", DOCS[:4])
            for _ in range(3):
                await core.search(SearchQuery("tiny", "cats", rerank_mode="none"))
            await core.impressions.drain()
        finally:
            await core.aclose()
            await server.stop(0)

    asyncio.run(scenario(0.0))
    assert feedback.events == []
    asyncio.run(scenario(1.0))
    assert len(feedback.events) == 3 and len({e.query_id for e in feedback.events}) == 3
