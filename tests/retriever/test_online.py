"""The retriever's interleaved serving: assignment by share, the merge, and the fallback that never fails."""

from __future__ import annotations

import asyncio

from services.retriever.interleaving import CHALLENGER, CHAMPION
from services.retriever.online import FALLBACKS, INTERLEAVED, OnlineExperiment, assigned, interleave

EXPERIMENT = OnlineExperiment("e1", "corpus-a", "v2", share=0.3)
CHAMPION_RANKING = [f"a{i}" for i in range(10)]
CHALLENGER_RANKING = [f"b{i}" for i in range(10)]


def run(challenger, timeout_s=1.0):
    return asyncio.run(interleave(EXPERIMENT, "q1", CHAMPION_RANKING, challenger, 10, timeout_s))


def test_the_share_of_searches_assigned_follows_the_setting():
    hits = sum(assigned(EXPERIMENT, f"q{i}") for i in range(5000))
    assert 1350 < hits < 1650
    assert assigned(EXPERIMENT, "q7") == assigned(EXPERIMENT, "q7")
    assert not any(assigned(OnlineExperiment("e", "c", "v", 0.0), f"q{i}") for i in range(500))
    assert all(assigned(OnlineExperiment("e", "c", "v", 1.0), f"q{i}") for i in range(500))


def test_a_working_challenger_is_interleaved_with_teams_and_the_experiment_id():
    before = INTERLEAVED.labels("corpus-a")._value.get()

    async def challenger():
        return CHALLENGER_RANKING

    served = run(challenger)
    assert served.experiment_id == "e1" and not served.fallback_reason
    assert sorted(served.teams) == sorted([CHAMPION] * 5 + [CHALLENGER] * 5)
    assert set(served.doc_ids) <= set(CHAMPION_RANKING) | set(CHALLENGER_RANKING)
    assert INTERLEAVED.labels("corpus-a")._value.get() == before + 1


def test_a_slow_broken_or_empty_challenger_serves_the_champion_and_is_counted():
    async def slow():
        await asyncio.sleep(5)
        return CHALLENGER_RANKING

    async def broken():
        raise ConnectionError("reranker gone")

    async def empty():
        return []

    for challenger, reason in ((slow, "deadline"), (broken, "ConnectionError"), (empty, "empty")):
        before = FALLBACKS.labels("corpus-a", reason)._value.get()
        served = run(challenger, timeout_s=0.05)
        assert served.doc_ids == tuple(CHAMPION_RANKING) and served.teams == () and served.experiment_id == ""
        assert reason in served.fallback_reason and "v2" in served.fallback_reason
        assert FALLBACKS.labels("corpus-a", reason)._value.get() == before + 1
