"""Bi-encoder versions: ONNX cosine matches sentence-transformers; a blend keeps the fused order's signal."""

from __future__ import annotations

import numpy as np
import pytest

from services.common.config import EngineSettings
from services.common.legs import Candidate
from services.engine.scorer import OnnxBiEncoder
from services.registry.importer import import_bi_encoder
from services.registry.store import FileRegistry
from services.reranker.combine import blend, fused_signal
from services.reranker.core import Document, RerankQuery
from tests.reranker.conftest import base_model_dir, scifact_pairs


@pytest.fixture(scope="module")
def bi_registry(tmp_path_factory) -> FileRegistry:
    registry = FileRegistry(tmp_path_factory.mktemp("bi") / "registry")
    base = base_model_dir()
    import_bi_encoder(registry, base, base, EngineSettings(), query_max_length=64, doc_max_length=256,
                      alias="champion", manifest_fields={"run_id": "test"})
    import_bi_encoder(registry, base, base, EngineSettings(), query_max_length=64, doc_max_length=256,
                      blend={"weight": 0.5, "depth": 4}, alias="challenger")
    return registry


def test_cosine_matches_sentence_transformers(bi_registry):
    from sentence_transformers import SentenceTransformer

    version = bi_registry.resolve("champion")
    manifest = bi_registry.manifest(version)
    assert manifest.kind == "bi-encoder" and manifest.extra["shared_towers"] and manifest.run_id == "test"
    scorer = OnnxBiEncoder(bi_registry.local_path(version), manifest, EngineSettings())
    pairs = scifact_pairs(30)
    got = np.concatenate([scorer.score(scorer.prepare(q, [d])) for q, d in pairs])
    st = SentenceTransformer(str(base_model_dir()), device="cpu")
    st.max_seq_length = 256
    q = st.encode([q for q, _ in pairs], normalize_embeddings=True)
    d = st.encode([d for _, d in pairs], normalize_embeddings=True)
    np.testing.assert_allclose(got, (q * d).sum(axis=1), atol=2e-3)
    again = np.concatenate([scorer.score(scorer.prepare(q, [d])) for q, d in pairs])  # from the vector cache
    np.testing.assert_allclose(again, got, atol=1e-6)


def test_blend_keeps_tail_in_fused_order_and_reorders_the_top():
    model = np.array([0.1, 0.9, 0.5, 0.2, 0.99, 0.0], dtype=np.float32)
    fused = fused_signal([0.0] * 6, 6)  # no legs: the input order is the fused order
    final = blend(model, fused, weight=1.0, depth=3)
    order = list(np.argsort(-final, kind="stable"))
    assert order[:3] == [1, 2, 0] and order[3:] == [3, 4, 5]
    assert list(np.argsort(-blend(model, fused, weight=0.0, depth=3), kind="stable")) == [0, 1, 2, 3, 4, 5]
    with_legs = fused_signal([0.2, 0.9, 0.1, 0.0, 0.3, 0.05], 6)
    assert list(np.argsort(-blend(model, with_legs, weight=0.0, depth=6), kind="stable"))[:2] == [1, 4]


def test_core_applies_a_versions_blend(bi_registry):
    import asyncio

    from services.common.config import Settings
    from services.reranker.batching import Batcher
    from services.reranker.cache import ResultCache
    from services.reranker.core import RerankerCore
    from services.reranker.versions import VersionPool

    async def run():
        settings = Settings()
        pool = VersionPool(bi_registry, settings.engine)
        await pool.refresh()
        batcher = Batcher(settings.engine)
        batcher.start()
        core = RerankerCore(settings, pool, batcher, ResultCache(0))
        docs = [Document(str(i), d, fused=Candidate(str(i), 1.0 - i / 10)) for i, (_, d) in enumerate(scifact_pairs(6))]
        query = scifact_pairs(1)[0][0]
        try:
            plain = await core.rerank(RerankQuery(query, docs, model="champion"))
            blended = await core.rerank(RerankQuery(query, docs, model="challenger"))
        finally:
            await batcher.close()
        return plain, blended

    plain, blended = asyncio.run(run())
    assert blended.model_version == bi_registry.resolve("challenger")
    assert [r.index for r in blended.results][4:] == [4, 5]  # past depth 4: the fused order
    assert all(r.score >= 2.0 for r in blended.results[:4])
    assert sorted(r.index for r in plain.results) == list(range(6))


def test_adapter_and_leg_vectors(tmp_path):
    """An adapted version scores normalize(q + qW) . d, taking d from the request when it may."""
    from sentence_transformers import SentenceTransformer

    registry = FileRegistry(tmp_path / "registry")
    base = base_model_dir()
    rng = np.random.default_rng(0)
    adapter = (rng.standard_normal((384, 384)) * 0.05).astype(np.float32)
    version = import_bi_encoder(registry, base, base, EngineSettings(), query_max_length=64, doc_max_length=256,
                                adapter=adapter, manifest_fields={"doc_tower_is_dense_leg": True})
    scorer = OnnxBiEncoder(registry.local_path(version.version_id), version, EngineSettings())
    st = SentenceTransformer(str(base), device="cpu")
    pairs = scifact_pairs(6)
    query, docs = pairs[0][0], [d for _, d in pairs]
    q = st.encode([query], normalize_embeddings=True)[0]
    q = (q + q @ adapter) / np.linalg.norm(q + q @ adapter)
    d = st.encode(docs, normalize_embeddings=True)
    np.testing.assert_allclose(scorer.score(scorer.prepare(query, docs)), d @ q, atol=2e-3)
    # Vectors sent with the request are used as they are (here: deliberately different ones).
    fake = [np.eye(384, dtype=np.float32)[i] for i in range(6)]
    items = scorer.prepare(query, docs, fake)
    assert all(len(i.ids) == 0 for i in items)
    np.testing.assert_allclose(scorer.score(items), np.stack(fake) @ q, atol=2e-3)


@pytest.fixture(scope="module")
def leg_registry(tmp_path_factory) -> FileRegistry:
    """A version whose document tower is the dense leg's embedder: it scores request vectors."""
    registry = FileRegistry(tmp_path_factory.mktemp("leg") / "registry")
    base = base_model_dir()
    import_bi_encoder(registry, base, base, EngineSettings(), query_max_length=64, doc_max_length=256,
                      alias="champion", manifest_fields={"doc_tower_is_dense_leg": True})
    return registry


def _leg_scorer(registry: FileRegistry) -> OnnxBiEncoder:
    version = registry.resolve("champion")
    return OnnxBiEncoder(registry.local_path(version), registry.manifest(version), EngineSettings())


def _unit(i: int, dim: int = 384) -> np.ndarray:
    return np.eye(dim, dtype=np.float32)[i]


def test_request_vectors_stay_with_their_own_request_in_a_shared_batch(leg_registry):
    """Two requests with the same texts but different vectors, scored in one batch as the batcher
    does: each document is scored with its own request's vector (they were merged by text digest)."""
    scorer = _leg_scorer(leg_registry)
    query, docs = scifact_pairs(1)[0][0], [d for _, d in scifact_pairs(3)]
    mine = [_unit(i) for i in range(3)]
    theirs = [_unit(10 + i) for i in range(3)]
    alone = scorer.score(scorer.prepare(query, docs, mine))
    plain = scorer.score(scorer.prepare(query, docs))  # the text's own embedding
    batch = scorer.prepare(query, docs, mine) + scorer.prepare(query, docs, theirs) + scorer.prepare(query, docs)
    shared = scorer.score(batch)
    np.testing.assert_allclose(shared[:3], alone, atol=1e-6)
    np.testing.assert_allclose(shared[3:6], scorer.score(scorer.prepare(query, docs, theirs)), atol=1e-6)
    np.testing.assert_allclose(shared[6:], plain, atol=1e-6)
    assert not np.allclose(alone, plain, atol=1e-3)


@pytest.mark.parametrize("bad, why", [(np.ones(383, np.float32), "384"),
                                      (np.full(384, np.nan, np.float32), "finite"),
                                      (np.full(384, np.inf, np.float32), "finite")])
def test_a_bad_vector_fails_only_its_own_request_in_a_batch(leg_registry, bad, why):
    import asyncio

    from services.common.config import Settings
    from services.common.errors import ErrorKind, FeedrankError
    from services.reranker.batching import Batcher
    from services.reranker.cache import ResultCache
    from services.reranker.core import RerankerCore
    from services.reranker.versions import VersionPool

    query, texts = scifact_pairs(1)[0][0], [d for _, d in scifact_pairs(8)]
    good = [Document(str(i), t, vector=tuple(_unit(i).tolist())) for i, t in enumerate(texts[:4])]
    broken = [Document(str(i), t, vector=tuple((bad if i == 2 else _unit(i)).tolist()))
              for i, t in enumerate(texts[4:])]

    async def run():
        settings = Settings()
        pool = VersionPool(leg_registry, settings.engine)
        await pool.refresh()
        batcher = Batcher(settings.engine)
        batcher.start()
        core = RerankerCore(settings, pool, batcher, ResultCache(0))
        try:
            return await asyncio.gather(*(core.rerank(RerankQuery(query, docs, model="champion"))
                                          for docs in (good, broken, good)), return_exceptions=True)
        finally:
            await batcher.close()

    first, failed, last = asyncio.run(run())
    for outcome in (first, last):  # co-batched callers (they got INTERNAL: the whole batch failed)
        assert not isinstance(outcome, BaseException), outcome
        assert sorted(r.index for r in outcome.results) == [0, 1, 2, 3]
    assert isinstance(failed, FeedrankError), failed
    assert (failed.kind, failed.field) == (ErrorKind.INVALID_ARGUMENT, "documents[2].embedding")
    assert why in failed.message


def test_the_result_cache_tells_requests_with_other_vectors_apart(leg_registry):
    import asyncio

    from services.common.config import Settings
    from services.reranker.batching import Batcher
    from services.reranker.cache import ResultCache
    from services.reranker.core import RerankerCore
    from services.reranker.versions import VersionPool

    query, texts = scifact_pairs(1)[0][0], [d for _, d in scifact_pairs(3)]

    def docs(offset: int) -> list[Document]:
        return [Document(str(i), t, vector=tuple(_unit(offset + i).tolist())) for i, t in enumerate(texts)]

    async def run():
        settings = Settings()
        pool = VersionPool(leg_registry, settings.engine)
        await pool.refresh()
        batcher = Batcher(settings.engine)
        batcher.start()
        core = RerankerCore(settings, pool, batcher, ResultCache(16))
        try:
            return [await core.rerank(RerankQuery(query, docs(offset), model="champion")) for offset in (0, 20, 0)]
        finally:
            await batcher.close()

    first, other, again = asyncio.run(run())
    assert not other.cached and again.cached
    assert [r.score for r in again.results] == [r.score for r in first.results]
    assert [r.score for r in other.results] != [r.score for r in first.results]
