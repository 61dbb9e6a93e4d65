"""Team-draft credit of one interleaved query from its clicks."""

from __future__ import annotations

from services.retriever.interleaving import CHALLENGER, CHAMPION
from services.trainer.online.credit import Outcome, credit

TEAMS = (CHAMPION, CHALLENGER, CHALLENGER, CHAMPION, CHAMPION)


def test_more_clicks_on_a_teams_documents_wins_the_query():
    assert credit(TEAMS, [2]) is Outcome.CHALLENGER_WINS
    assert credit(TEAMS, [1]) is Outcome.CHAMPION_WINS
    assert credit(TEAMS, [1, 2, 3]) is Outcome.CHALLENGER_WINS
    assert credit(TEAMS, [1, 4, 3]) is Outcome.CHAMPION_WINS


def test_equal_clicks_and_no_click_are_ties():
    assert credit(TEAMS, []) is Outcome.TIE
    assert credit(TEAMS, [1, 2]) is Outcome.TIE


def test_a_document_clicked_twice_counts_once_and_unshown_ranks_are_ignored():
    assert credit(TEAMS, [2, 2, 1]) is Outcome.TIE
    assert credit(TEAMS, [1, 9, 0, -3]) is Outcome.CHAMPION_WINS
