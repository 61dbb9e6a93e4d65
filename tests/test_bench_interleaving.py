"""The interleaving benchmark's exact click distributions agree with the demo's simulated users,
homogeneous and heterogeneous."""

from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np

import pytest

from bench.interleaving import Clicks, clicks_distribution, credit_distribution, quantile_users
from services.client import Click
from services.common.config import PopulationSettings
from services.demo.simulate import INTENTS, ClickModel, Population, SimulatedUser, UserSimulator
from services.retriever.interleaving import CHALLENGER, query_coin, team_draft
from services.trainer.online.credit import Outcome, credit

DOCS = [f"d{i}" for i in range(10)]
RELEVANT = {"d1": 1, "d4": 1, "d7": 1}


def simulator(model: ClickModel) -> UserSimulator:
    # Nothing is dialled: only `_behave` (the users' click behaviour) is used.
    return UserSimulator("127.0.0.1:1", "127.0.0.1:1", "c", {"q": "text"}, {"q": RELEVANT}, model)


def sampled_clicks(sim: UserSimulator, doc_ids: list[str]) -> list[int]:
    response = SimpleNamespace(hits=[SimpleNamespace(doc_id=d, rank=r) for r, d in enumerate(doc_ids, start=1)])
    events = sim._behave("q", response, sim.model)
    return [doc_ids.index(e.doc_id) + 1 for e in events if isinstance(e, Click)]


# The demo's users, and a navigational one who is impatient and clicks little (stops after noise clicks too).
MODELS = [ClickModel(seed=11), ClickModel(examination_decay=2.0, seed=11, **{
    k: min(1.0, 0.5 * v) if k.startswith("click") else v for k, v in INTENTS["navigational"].items()})]


@pytest.mark.parametrize("model", MODELS, ids=["demo", "navigational"])
def test_clicks_per_page_match_the_simulated_users(model):
    sim = simulator(model)
    try:
        counts = np.bincount([len(sampled_clicks(sim, DOCS)) for _ in range(20_000)], minlength=11)
    finally:
        sim.close()
    [exact] = clicks_distribution([d in RELEVANT for d in DOCS], Clicks.of([model]))
    assert abs(exact.sum() - 1) < 1e-9
    assert np.abs(counts / counts.sum() - exact).max() < 0.015


@pytest.mark.parametrize("model", MODELS, ids=["demo", "navigational"])
def test_team_draft_credit_matches_the_simulated_users(model):
    sim = simulator(model)
    champion, challenger = DOCS, list(reversed(DOCS))
    merged = team_draft(champion, challenger, 10, query_coin("q"))
    outcomes = []
    try:
        for _ in range(20_000):
            outcomes.append(credit(merged.teams, sampled_clicks(sim, list(merged.doc_ids))))
    finally:
        sim.close()
    [win], [loss] = credit_distribution([d in RELEVANT for d in merged.doc_ids],
                                        [t == CHALLENGER for t in merged.teams], Clicks.of([model]))
    assert abs(outcomes.count(Outcome.CHALLENGER_WINS) / len(outcomes) - win) < 0.015
    assert abs(outcomes.count(Outcome.CHAMPION_WINS) / len(outcomes) - loss) < 0.015
    assert 0 < win and 0 < loss  # the page has relevant documents from both teams


def test_no_relevant_document_means_noise_clicks_only():
    clicks = Clicks.of([ClickModel(click_noise=0.0)])
    assert clicks_distribution([False] * 10, clicks)[0, 0] == 1.0
    teams = [random.Random(1).random() < 0.5 for _ in range(10)]
    assert [float(p[0]) for p in credit_distribution([False] * 10, teams, clicks)] == [0, 0]


def test_the_default_population_leaves_the_demo_users_as_they_were():
    """demo.population defaults to homogeneous, and the simulator's seeded users click exactly as before."""
    assert PopulationSettings().kind == "homogeneous"
    sim = simulator(ClickModel(seed=3))
    try:
        assert sim.population is None and sim._behaviour("q") is sim.model
        first = [sampled_clicks(sim, DOCS) for _ in range(200)]
    finally:
        sim.close()
    rng = random.Random(3)  # the click model of before: examine, click, stop only after a relevant click
    replayed = []
    for _ in range(200):
        clicks = []
        for rank, doc in enumerate(DOCS, start=1):
            if rng.random() > 1 / rank:
                continue
            relevant = doc in RELEVANT
            if rng.random() >= (0.9 if relevant else 0.05):
                continue
            rng.randint(30_000, 180_000) if relevant else rng.randint(1_000, 8_000)
            clicks.append(rank)
            if rng.random() < 0.3:
                rng.random()
            if relevant and rng.random() < 0.7:
                break
        replayed.append(clicks)
    assert first == replayed


def test_a_heterogeneous_population_draws_its_stated_distributions():
    settings = PopulationSettings(kind="heterogeneous")
    population = Population(settings, ClickModel())
    rng = random.Random(1)
    users = [population.user(rng) for _ in range(20_000)]
    propensities = np.array([u.propensity for u in users])
    decays = np.array([u.examination_decay for u in users])
    # exponential: mean 1, median ln 2
    assert abs(propensities.mean() - 1) < 0.03 and abs(np.median(propensities) - np.log(2)) < 0.03
    assert decays.min() >= 0.5 and decays.max() <= 2.0 and abs(np.median(decays) - 1) < 0.03  # log-uniform
    assert abs(np.mean([u.searches for u in users]) - settings.queries_per_user) < 0.15
    intents = [population.intent(f"q{i}") for i in range(5000)]
    assert abs(intents.count("navigational") / len(intents) - settings.navigational_share) < 0.02
    assert population.intent("q7") == Population(settings, ClickModel()).intent("q7")  # fixed per query
    shy = population.behaviour(SimulatedUser(0.1, 1.5), "q7")
    eager = population.behaviour(SimulatedUser(5.0, 0.5), "q7")
    assert shy.click_relevant < eager.click_relevant == 1.0 and shy.examination_decay == 1.5
    types = quantile_users(settings, 6)
    assert len(types) == 36 and abs(np.mean([u.propensity for u in types]) - 1) < 1e-9  # the mean is kept


def test_a_population_user_makes_their_searches_then_the_next_comes():
    settings = PopulationSettings(kind="heterogeneous", queries_per_user=3.0)
    sim = UserSimulator("127.0.0.1:1", "127.0.0.1:1", "c", {"q": "text"}, {"q": RELEVANT}, ClickModel(seed=2),
                        population=Population(settings, ClickModel(seed=2)))
    try:
        seen = [sim._behaviour("q") for _ in range(3000)]
    finally:
        sim.close()
    changes = sum(a != b for a, b in zip(seen, seen[1:]))
    assert 3000 / 3.0 * 0.85 < changes + 1 < 3000 / 3.0 * 1.15
