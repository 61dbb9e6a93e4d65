"""The interleaving benchmark's exact click distributions agree with the demo's simulated users."""

from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np

from bench.interleaving import clicks_distribution, credit_distribution
from services.client import Click
from services.demo.simulate import ClickModel, UserSimulator
from services.retriever.interleaving import CHALLENGER, query_coin, team_draft
from services.trainer.online.credit import Outcome, credit

DOCS = [f"d{i}" for i in range(10)]
RELEVANT = {"d1": 1, "d4": 1, "d7": 1}


def simulator(model: ClickModel) -> UserSimulator:
    # Nothing is dialled: only `_behave` (the users' click behaviour) is used.
    return UserSimulator("127.0.0.1:1", "127.0.0.1:1", "c", {"q": "text"}, {"q": RELEVANT}, model)


def sampled_clicks(sim: UserSimulator, doc_ids: list[str]) -> list[int]:
    response = SimpleNamespace(hits=[SimpleNamespace(doc_id=d, rank=r) for r, d in enumerate(doc_ids, start=1)])
    return [doc_ids.index(e.doc_id) + 1 for e in sim._behave("q", response) if isinstance(e, Click)]


def test_clicks_per_page_match_the_simulated_users():
    model = ClickModel(seed=11)
    sim = simulator(model)
    try:
        counts = np.bincount([len(sampled_clicks(sim, DOCS)) for _ in range(20_000)], minlength=11)
    finally:
        sim.close()
    exact = clicks_distribution([d in RELEVANT for d in DOCS], model)
    assert abs(exact.sum() - 1) < 1e-9
    assert np.abs(counts / counts.sum() - exact).max() < 0.015


def test_team_draft_credit_matches_the_simulated_users():
    model = ClickModel(seed=5)
    sim = simulator(model)
    champion, challenger = DOCS, list(reversed(DOCS))
    merged = team_draft(champion, challenger, 10, query_coin("q"))
    outcomes = []
    try:
        for _ in range(20_000):
            outcomes.append(credit(merged.teams, sampled_clicks(sim, list(merged.doc_ids))))
    finally:
        sim.close()
    win, loss = credit_distribution([d in RELEVANT for d in merged.doc_ids],
                                    [t == CHALLENGER for t in merged.teams], model)
    assert abs(outcomes.count(Outcome.CHALLENGER_WINS) / len(outcomes) - win) < 0.015
    assert abs(outcomes.count(Outcome.CHAMPION_WINS) / len(outcomes) - loss) < 0.015
    assert 0 < win and 0 < loss  # the page has relevant documents from both teams


def test_no_relevant_document_means_noise_clicks_only():
    model = ClickModel(click_noise=0.0)
    assert clicks_distribution([False] * 10, model)[0] == 1.0
    assert credit_distribution([False] * 10, [random.Random(1).random() < 0.5 for _ in range(10)], model) == (0, 0)
