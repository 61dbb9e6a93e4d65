"""The adaptive batcher merges requests only when the measured batch curve says it pays."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import numpy as np

from services.common.config import EngineSettings
from services.proto.feedrank.v1 import reranker_pb2
from services.reranker.batching import Batcher
from services.engine.scorer import Scorer


@dataclass(frozen=True)
class _Item:
    ids: list[int]
    value: float


class _TimedScorer(Scorer):
    """A deterministic stand-in whose forward pass costs `overhead + per_token * padded tokens` seconds."""

    max_length = 64

    def __init__(self, version_id: str, overhead: float, per_token: float):
        self.version_id, self.overhead, self.per_token = version_id, overhead, per_token
        self.batches: list[list[float]] = []

    def prepare(self, query, texts, vectors=None):
        return [_Item(list(range(min(len(t.split()) + 4, self.max_length))), float(len(t))) for t in texts]

    def pair_lengths(self, query, texts):
        return [len(t.split()) + 4 for t in texts]

    def document_heads(self, texts, max_tokens):
        return [" ".join(t.split()[:max_tokens]) for t in texts]

    def document_tokens(self, texts):
        return []  # never called: the batcher is driven directly, not through the core's passages

    def passage_room(self, query):
        return self.max_length

    def score(self, items):
        width = max(len(i.ids) for i in items)
        time.sleep(self.overhead + self.per_token * width * len(items))
        self.batches.append([i.value for i in items])
        return np.array([i.value for i in items], dtype=np.float32)


def _serve(scorer: _TimedScorer, requests: list[list[str]], **engine) -> tuple[Batcher, list[np.ndarray]]:
    async def run():
        batcher = Batcher(EngineSettings(max_batch_pairs=16, max_wait_ms=20, batch_warmup_s=0.4, **engine))
        batcher.start()
        try:
            async def one(texts):
                with batcher.announce():
                    await asyncio.sleep(0)
                    return (await batcher.submit(scorer, scorer.prepare("q", texts))).scores

            return batcher, await asyncio.gather(*(one(t) for t in requests))
        finally:
            await batcher.close()

    return asyncio.run(run())


def _served(scorer: _TimedScorer) -> list[list[float]]:
    """The passes that scored requests, not the curve's calibration passes (whose texts are far longer)."""
    return [b for b in scorer.batches if max(b) < 200]


def _requests() -> list[list[str]]:
    return [[("w " * (3 + (r * 5 + i) % 40)) + str(r) for i in range(2)] for r in range(8)]


def test_when_batching_does_not_pay_each_request_runs_alone():
    # Cost proportional to tokens, no fixed overhead: a batch of n is n times one pair (a saturated CPU).
    scorer = _TimedScorer("flat", overhead=0.0, per_token=0.0002)
    requests = _requests()
    batcher, results = _serve(scorer, requests)
    (policy,) = batcher.policies()
    assert policy.version_id == "flat" and not policy.merge and policy.curve.gain < 1.1
    served = _served(scorer)
    request_of = {len(t): r for r, texts in enumerate(requests) for t in texts}
    assert all(len({request_of[int(v)] for v in batch}) == 1 for batch in served)  # never merged
    for texts, scores in zip(requests, results):
        np.testing.assert_array_equal(scores, [float(len(t)) for t in texts])


def test_when_batching_pays_concurrent_requests_are_merged():
    # A large fixed cost per pass (a GPU launch, Python overhead): merging pays.
    scorer = _TimedScorer("steep", overhead=0.01, per_token=0.000005)
    requests = _requests()
    batcher, results = _serve(scorer, requests)
    (policy,) = batcher.policies()
    assert policy.merge and policy.curve.gain > 2 and policy.batch_pairs > 2
    assert max(len(b) for b in _served(scorer)) > 2  # some pass served more than one request's pairs
    for texts, scores in zip(requests, results):
        np.testing.assert_array_equal(scores, [float(len(t)) for t in texts])
    info = reranker_pb2.BatchPolicy(**policy.as_dict())
    assert info.merge and info.batch_pairs == policy.batch_pairs and info.pairs_per_s[1] > 0


def test_batching_off_never_merges_even_when_it_would_pay():
    scorer = _TimedScorer("steep-off", overhead=0.01, per_token=0.000005)
    batcher, _ = _serve(scorer, _requests(), batching_enabled=False)
    (policy,) = batcher.policies()
    assert not policy.merge and policy.curve.gain > 2  # measured, reported, not used
    assert max(len(b) for b in _served(scorer)) <= 2  # one request's two pairs at most


def test_a_scorer_that_fails_its_curve_fails_its_requests_not_the_batcher():
    import pytest

    from services.common.errors import FeedrankError

    class Broken(_TimedScorer):
        def score(self, items):
            raise RuntimeError("no session")

    async def run():
        batcher = Batcher(EngineSettings(batch_warmup_s=0.1))
        batcher.start()
        try:
            broken, healthy = Broken("broken", 0, 0), _TimedScorer("ok", 0, 0)
            with pytest.raises(FeedrankError, match="inference failed"):
                await asyncio.wait_for(batcher.submit(broken, broken.prepare("q", ["a b"])), 30)
            result = await asyncio.wait_for(batcher.submit(healthy, healthy.prepare("q", ["a b"])), 30)
            return batcher.policies(), result.scores
        finally:
            await batcher.close()

    policies, scores = asyncio.run(run())
    assert [(p.version_id, p.curve is None) for p in policies] == [("broken", True), ("ok", False)]
    assert scores.tolist() == [3.0]
