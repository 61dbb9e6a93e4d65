"""The ONNX export scores like sentence-transformers, and the batcher returns each request its own scores."""

from __future__ import annotations

import asyncio

import numpy as np

from services.common.config import EngineSettings
from services.engine.scorer import OnnxCrossEncoder
from services.reranker.batching import Batcher
from tests.reranker.conftest import scifact_pairs


def _scorer(registry, name="champion", **engine) -> OnnxCrossEncoder:
    version = registry.resolve(name)
    return OnnxCrossEncoder(registry.local_path(version), registry.manifest(version), EngineSettings(**engine))


def test_onnx_matches_sentence_transformers_on_100_real_pairs(registry, hf_models):
    from sentence_transformers import CrossEncoder

    pairs = scifact_pairs(100)
    expected = CrossEncoder(str(hf_models[0]), device="cpu").predict(pairs, batch_size=16)
    scorer = _scorer(registry)
    got = np.concatenate([scorer.score(scorer.prepare(q, [d])) for q, d in pairs])
    assert got.shape == (100,)
    assert np.max(np.abs(got - expected)) < 1e-3
    assert np.std(got) > 0  # a constant output would match nothing real


def test_int8_variant_loads_and_stays_close(registry):
    pairs = scifact_pairs(20)
    fp32, int8 = _scorer(registry), _scorer(registry, precision="int8")
    assert int8.model.precision == "int8"
    a = np.concatenate([fp32.score(fp32.prepare(q, [d])) for q, d in pairs])
    b = np.concatenate([int8.score(int8.prepare(q, [d])) for q, d in pairs])
    assert np.max(np.abs(a - b)) < 0.1


def test_concurrent_requests_get_exactly_their_own_scores(registry):
    scorer = _scorer(registry)
    pairs = scifact_pairs(60)
    requests = [(pairs[i][0], [d for _, d in pairs[i : i + 1 + i % 7]]) for i in range(40)]
    expected = [scorer.score(scorer.prepare(q, docs)) for q, docs in requests]

    async def run() -> list[np.ndarray]:
        batcher = Batcher(EngineSettings(max_batch_pairs=16, max_wait_ms=5))
        batcher.start()
        try:
            results = await asyncio.gather(
                *(batcher.submit(scorer, scorer.prepare(q, docs)) for q, docs in requests)
            )
        finally:
            await batcher.close()
        return [r.scores for r in results]

    for got, want in zip(asyncio.run(run()), expected):
        # Batched with other lengths means different padding: equal up to float noise.
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_cancelled_request_never_reaches_the_model(registry):
    scorer = _scorer(registry)
    calls: list[int] = []
    original = scorer.score

    def counting(encodings):
        calls.append(len(encodings))
        return original(encodings)

    scorer.score = counting  # type: ignore[method-assign]

    async def run() -> None:
        # No batch curve: measuring it runs the model by design, and this test counts request pairs.
        batcher = Batcher(EngineSettings(max_wait_ms=50, batch_warmup_s=0))
        batcher.start()
        try:
            task = asyncio.ensure_future(batcher.submit(scorer, scorer.prepare("q", ["doomed"] * 3)))
            await asyncio.sleep(0)
            task.cancel()
            ok = await batcher.submit(scorer, scorer.prepare("q", ["kept"]))
            assert ok.scores.shape == (1,)
        finally:
            await batcher.close()

    asyncio.run(run())
    assert sum(calls) == 1


def test_full_queue_refuses_work(registry):
    from services.common.errors import ErrorKind, FeedrankError

    scorer = _scorer(registry)

    async def run() -> list:
        batcher = Batcher(EngineSettings(max_queue_pairs=4, max_wait_ms=20))
        batcher.start()
        try:
            return await asyncio.gather(
                *(batcher.submit(scorer, scorer.prepare("q", ["d", "e"])) for _ in range(6)), return_exceptions=True
            )
        finally:
            await batcher.close()

    results = asyncio.run(run())
    refused = [r for r in results if isinstance(r, FeedrankError)]
    assert refused and all(r.kind is ErrorKind.RESOURCE_EXHAUSTED for r in refused)
    assert any(not isinstance(r, Exception) for r in results)
