"""Randomised interventions through the real Search RPC: what is shown, what the impression records."""

from __future__ import annotations

import asyncio
import random

import pytest

from services.common.config import InterventionSettings
from services.proto.feedrank.v1 import feedback_pb2_grpc, retriever_pb2
from services.retriever.interventions import intervene
from services.retriever.domain import Hit
from tests.retriever.conftest import RecordingFeedback, start_stub_server
from tests.retriever.test_server import _settings, _with_server, data, template  # noqa: F401 (fixtures)


def _hits(n: int) -> list[Hit]:
    hits = [Hit(f"d{i}", "", "", None) for i in range(1, n + 1)]
    for rank, hit in enumerate(hits, 1):
        hit.rank = hit.ranked_rank = rank
    return hits


@pytest.mark.parametrize("kind", ["rand_pair", "top_n_shuffle"])
def test_an_intervention_only_reorders_the_retrieved_top_n(kind):
    settings = InterventionSettings(share=1.0, kind=kind, top_n=5)
    rng = random.Random(3)
    moved_to = set()
    for _ in range(200):
        shown, intervention = intervene(_hits(8), settings, rng)
        assert intervention.kind == kind and intervention.depth == 5
        assert sorted(h.doc_id for h in shown) == sorted(f"d{i}" for i in range(1, 9))  # nothing added or lost
        assert [h.rank for h in shown] == list(range(1, 9))
        assert [h.doc_id for h in shown[5:]] == ["d6", "d7", "d8"]  # below top_n: as ranked
        assert all(h.doc_id == f"d{h.ranked_rank}" for h in shown)
        if kind == "rand_pair":
            k = next(h.rank for h in shown if h.ranked_rank == 1)
            assert shown[0].ranked_rank == k and all(h.rank == h.ranked_rank for h in shown if h.rank not in (1, k))
        moved_to.add(next(h.rank for h in shown if h.ranked_rank == 1))
    assert moved_to >= {2, 3, 4, 5}  # every reachable rank is drawn
    none, intervention = intervene(_hits(8), InterventionSettings(share=0.0), rng)
    assert intervention is None and [h.ranked_rank for h in none] == list(range(1, 9))


def test_search_shows_and_logs_the_intervention_and_respects_opt_outs(data, embedder):
    feedback = RecordingFeedback()

    async def scenario(interventions):
        fb_server, fb_target = await start_stub_server(
            lambda s: feedback_pb2_grpc.add_FeedbackServicer_to_server(feedback, s))

        async def body(stub, core):
            asked = retriever_pb2.SearchRequest(corpus_id="tiny", query="volcano lava eruption", top_k=6,
                                                rerank_mode="none", session_id="u-1")
            as_ranked = await stub.Search(retriever_pb2.SearchRequest(
                corpus_id="tiny", query="volcano lava eruption", top_k=6, rerank_mode="none", no_intervention=True))
            shown = [await stub.Search(asked) for _ in range(12)]
            for _ in range(100):
                if len(feedback.events) >= 13:
                    break
                await asyncio.sleep(0.05)
            return as_ranked, shown

        settings = _settings(data, feedback=fb_target)
        try:
            return await _with_server(settings.replace(interventions=interventions), embedder, body)
        finally:
            await fb_server.stop(0)

    as_ranked, shown = asyncio.run(scenario(InterventionSettings(share=1.0, kind="rand_pair", top_n=6)))
    ranked_ids = [r.doc_id for r in as_ranked.results]
    for response in shown:
        ids = [r.doc_id for r in response.results]
        assert sorted(ids) == sorted(ranked_ids) and ids != ranked_ids  # swapped, never a new document
    by_query = {e.query_id: e.impression for e in feedback.events}
    assert by_query[as_ranked.query_id].intervention == ""  # evaluation traffic is never reordered
    for response in shown:
        impression = by_query[response.query_id]
        assert impression.intervention == "rand_pair" and impression.intervention_depth == 6
        assert [ranked_ids[r.ranked_rank - 1] for r in impression.results] == [r.doc_id for r in response.results]

    feedback.events.clear()
    as_ranked, shown = asyncio.run(scenario(InterventionSettings(share=1.0, opt_out_corpora=["tiny"])))
    assert all([r.doc_id for r in s.results] == [r.doc_id for r in as_ranked.results] for s in shown)
    assert {e.impression.intervention for e in feedback.events} == {""}
