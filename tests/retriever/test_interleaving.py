"""Team-draft interleaving: the merge's properties over generated rankings, and its per-query seeding."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.retriever.interleaving import CHALLENGER, CHAMPION, query_coin, team_draft

DOCS = st.text(alphabet="abcdefgh", min_size=1, max_size=2)
RANKING = st.lists(DOCS, max_size=25)


@settings(max_examples=400, deadline=None)
@given(champion=RANKING, challenger=RANKING, length=st.integers(0, 30), seed=st.integers(0, 2**32))
def test_every_result_comes_from_its_team_without_duplicates(champion, challenger, length, seed):
    merged = team_draft(champion, challenger, length, random.Random(seed))
    assert len(merged.doc_ids) == len(merged.teams)
    assert len(set(merged.doc_ids)) == len(merged.doc_ids)
    for doc, team in zip(merged.doc_ids, merged.teams):
        assert doc in (champion if team == CHAMPION else challenger)
    assert len(merged.doc_ids) == min(length, len(set(champion) | set(challenger)))


@settings(max_examples=400, deadline=None)
@given(champion=RANKING, challenger=RANKING, length=st.integers(0, 30), seed=st.integers(0, 2**32))
def test_each_team_picks_its_best_unshown_document(champion, challenger, length, seed):
    merged = team_draft(champion, challenger, length, random.Random(seed))
    for i, (doc, team) in enumerate(zip(merged.doc_ids, merged.teams)):
        ranking = champion if team == CHAMPION else challenger
        earlier = set(merged.doc_ids[:i])
        assert doc == next(d for d in ranking if d not in earlier)


@settings(max_examples=400, deadline=None)
@given(champion=RANKING, challenger=RANKING, length=st.integers(0, 30), seed=st.integers(0, 2**32))
def test_teams_balanced_within_one_per_prefix_while_both_can_pick(champion, challenger, length, seed):
    merged = team_draft(champion, challenger, length, random.Random(seed))
    for i in range(1, len(merged.doc_ids) + 1):
        shown = set(merged.doc_ids[:i])
        # Balance is owed only while both rankings still had an unshown document to offer.
        if set(champion) <= shown or set(challenger) <= shown:
            break
        prefix = merged.teams[:i]
        assert abs(prefix.count(CHAMPION) - prefix.count(CHALLENGER)) <= 1


@settings(max_examples=200, deadline=None)
@given(docs=st.lists(DOCS, min_size=10, max_size=20, unique=True), seed=st.integers(0, 2**32))
def test_rankings_deep_enough_are_balanced_at_every_prefix(docs, seed):
    rng = random.Random(seed)
    champion, challenger = rng.sample(docs, len(docs)), rng.sample(docs, len(docs))
    merged = team_draft(champion, challenger, 10, rng)
    assert len(merged.doc_ids) == 10
    for i in range(1, 11):
        assert abs(merged.teams[:i].count(CHAMPION) - merged.teams[:i].count(CHALLENGER)) <= 1


def test_identical_rankings_give_the_same_list_with_both_teams():
    ranking = [f"d{i}" for i in range(10)]
    merged = team_draft(ranking, ranking, 10, query_coin("q1"))
    assert list(merged.doc_ids) == ranking
    assert merged.teams.count(CHAMPION) == merged.teams.count(CHALLENGER) == 5


def test_the_coin_is_seeded_by_query_id():
    a, b = [f"a{i}" for i in range(10)], [f"b{i}" for i in range(10)]
    assert team_draft(a, b, 10, query_coin("q1", "exp")) == team_draft(a, b, 10, query_coin("q1", "exp"))
    merges = {team_draft(a, b, 10, query_coin(f"q{i}", "exp")).teams for i in range(50)}
    assert len(merges) > 10  # different queries draw different coins
    first_picks = [team_draft(a, b, 10, query_coin(f"q{i}", "exp")).teams[0] for i in range(400)]
    assert 150 < first_picks.count(CHAMPION) < 250  # a fair coin, not always one team first


def test_negative_length_is_refused():
    with pytest.raises(ValueError, match="length"):
        team_draft(["a"], ["b"], -1, query_coin("q"))
