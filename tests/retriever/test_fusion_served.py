"""A promoted version's learned fusion is what the retriever serves for its corpus, and for no other.

Real gRPC server, real registry, real indexes; the reranker is unreachable, so every search degrades to
the fused order: the order under test.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest

from services.common.config import Settings
from services.proto.feedrank.v1 import retriever_pb2
from services.registry.store import open_registry
from services.retriever.core import RetrieverCore
from tests.retriever.conftest import DOCS
from tests.retriever.test_server import _run, _settings, data, template  # noqa: F401 (fixtures)

QUERY = "volcano lava eruption"
LEXICAL_ONLY = {"method": "weighted", "normalization": "minmax", "rrf_k": 60.0,
                "weights": {"lexical": 1.0, "vector": 0.0}}


def _publish(data, corpus_id: str, fusion: dict) -> str:
    """A version as the trainer publishes one with a learned fusion (only what the retriever reads of it)."""
    folder = data / f"staging-{corpus_id}"
    folder.mkdir(exist_ok=True)
    (folder / "head.json").write_text("{}")
    manifest = open_registry(data / "registry").publish(folder, {
        "kind": "bi-encoder", "base_model": "test", "max_length": 256, "activation": "identity",
        "corpus_id": corpus_id, "fusion": fusion,
    })
    return manifest.version_id


def test_the_corpus_champions_fusion_is_served_for_that_corpus_only(data, embedder):
    core = RetrieverCore(_settings(data), embedder=embedder)
    core.ingest("other", DOCS)
    core.close()
    mine = _publish(data, "tiny", LEXICAL_ONLY)
    registry = open_registry(data / "registry")

    async def body(stub, core):
        def search(corpus_id="tiny", **kw):
            return stub.Search(retriever_pb2.SearchRequest(corpus_id=corpus_id, query=QUERY, top_k=12, **kw))

        out = {"before": await search(rerank_mode="learning")}
        registry.set_alias("champion", mine, "test", corpus_id="tiny")
        await asyncio.sleep(0.1)  # adapter_refresh_s below
        out["champion"] = await search(rerank_mode="learning")
        out["mode none"] = await search(rerank_mode="none")
        out["other corpus"] = await search("other", rerank_mode="learning")
        out["request's own method"] = await search(
            rerank_mode="learning", fusion=retriever_pb2.FusionConfig(method=retriever_pb2.FUSION_METHOD_RRF))
        with pytest.raises(grpc.aio.AioRpcError) as negative:
            await search(rerank_mode="learning", fusion=retriever_pb2.FusionConfig(sparse_weight=-0.5))
        assert negative.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "fusion.sparse_weight" in negative.value.details()
        return out

    base = Settings(data_dir=str(data))
    out = _run(data, embedder, body, retrieval=base.retrieval.model_copy(update={"adapter_refresh_s": 0.05}))
    rrf_top = 2 / 61 + 1e-9  # plain RRF: a document first in both legs
    for name in ("before", "mode none", "other corpus", "request's own method"):
        assert out[name].results[0].legs.fused_score <= rrf_top, name
    served = out["champion"]
    assert served.degraded_reason  # the reranker is unreachable: the fused order is what users get
    # Weighted min-max with the lexical leg alone: the lexical leg's order, its best document scored 1.
    assert served.results[0].legs.fused_score == pytest.approx(1.0) and served.results[0].legs.lexical_rank == 1
    scored = [r for r in served.results if r.legs.fused_score > 0]  # min-max puts the leg's last document at 0
    assert [r.legs.lexical_rank for r in scored] == list(range(1, len(scored) + 1))
    assert all(r.legs.lexical_rank == 0 or r.legs.fused_score == 0 for r in served.results[len(scored):])
    assert [r.doc_id for r in out["before"].results] != [r.doc_id for r in served.results]


def test_a_damaged_learned_fusion_falls_back_to_the_configured_one(data, embedder, caplog):
    bad = _publish(data, "tiny", {"method": "weighted", "weights": {"vector": -1.0}})
    open_registry(data / "registry").set_alias("champion", bad, "test", corpus_id="tiny")

    async def body(stub, core):
        request = retriever_pb2.SearchRequest(corpus_id="tiny", query=QUERY, top_k=5, rerank_mode="learning")
        return [await stub.Search(request) for _ in range(2)]

    first, second = _run(data, embedder, body)
    assert first.results[0].legs.fused_score <= 2 / 61 + 1e-9
    assert [r.doc_id for r in first.results] == [r.doc_id for r in second.results]
    warnings = [r for r in caplog.records if "fusion.weights.vector" in r.getMessage()]
    assert len(warnings) == 1  # once per damaged version, not once per search
