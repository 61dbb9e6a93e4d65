"""The experiment book (bad input, one per corpus, history) and the ledger that credits interleaved queries."""

from __future__ import annotations

import pytest

from services.common.config import InterleavingSettings
from services.common.errors import ErrorKind, FeedrankError
from services.retriever.interleaving import CHALLENGER, CHAMPION
from services.trainer.online.credit import Outcome
from services.trainer.online.experiments import P_VALUE, QUERIES, ExperimentBook
from services.trainer.online.ledger import UNCREDITED, Ledger

TEAMS = (CHALLENGER, CHAMPION, CHAMPION, CHALLENGER)


@pytest.fixture
def book(tmp_path):
    return ExperimentBook(tmp_path / "experiments.json", InterleavingSettings(query_budget=1000))


@pytest.mark.parametrize("kwargs, field", [
    ({"challenger_version": ""}, "challenger_version"),
    ({"challenger_version": "v1"}, "challenger_version"),  # the champion itself
    ({"share": 1.5}, "share"),
    ({"share": -0.1}, "share"),
    ({"query_budget": 0}, "query_budget"),
    ({"corpus_id": ""}, "corpus_id"),
])
def test_bad_input_names_the_field(book, kwargs, field):
    args = {"corpus_id": "a", "champion_version": "v1", "challenger_version": "v2", **kwargs}
    with pytest.raises(FeedrankError) as err:
        book.start(**args)
    assert err.value.kind is ErrorKind.INVALID_ARGUMENT and err.value.field == field


def test_one_running_experiment_per_corpus(book):
    first = book.start("a", "v1", "v2", share=0.3)
    with pytest.raises(FeedrankError) as err:
        book.start("a", "v1", "v3")
    assert err.value.field == "corpus_id" and first.experiment_id in err.value.message
    book.start("b", "v1", "v3")  # another corpus is free
    book.stop("a", "operator")
    second = book.start("a", "v1", "v3")
    assert [e.state for e in book.history("a")] == ["stopped", "running"]
    assert book.status("a").experiment_id == second.experiment_id
    with pytest.raises(FeedrankError) as err:
        book.status("nothing")
    assert err.value.kind is ErrorKind.NOT_FOUND


def test_the_book_survives_a_restart(book, tmp_path):
    started = book.start("a", "v1", "v2")
    book.record(started.experiment_id, [Outcome.CHALLENGER_WINS, Outcome.TIE])
    book.start("b", "v1", "v2", shadow=True)
    again = ExperimentBook(tmp_path / "experiments.json", InterleavingSettings())
    assert again.running("a").wins == 1 and again.running("a").ties == 1 and not again.running("a").shadow
    assert again.running("b").shadow
    assert [p[1:4] for p in again.running("a").progress] == [[1, 0, 1]]  # one credited batch: 1 win, 1 tie


def test_a_decision_ends_the_experiment_with_its_numbers(book):
    experiment = book.start("a", "v1", "v2")
    done = book.record(experiment.experiment_id, [Outcome.CHALLENGER_WINS] * 200)
    assert done.state == "win" and done.p_value <= done.alpha
    assert done.wins < 200 and "wins" in done.reason and str(done.wins) in done.reason
    assert book.running("a") is None
    assert book.record(experiment.experiment_id, [Outcome.CHAMPION_WINS]).losses == 0
    assert QUERIES.labels("a", "win")._value.get() == done.wins
    assert P_VALUE.labels("a")._value.get() == done.p_value


def test_the_budget_ends_it_undecided(tmp_path):
    book = ExperimentBook(tmp_path / "e.json", InterleavingSettings(query_budget=10))
    experiment = book.start("a", "v1", "v2")
    assert book.record(experiment.experiment_id, [Outcome.TIE] * 12).state == "undecided"
    assert book.status("a").ties == 10


def test_the_ledger_credits_after_the_window_with_the_clicks_that_came(book):
    experiment = book.start("a", "v1", "v2")
    ledger = Ledger(book, click_window_ms=1000)
    ledger.click("q1", experiment.experiment_id, 4, clicked_ms=900)  # before its impression: still counts
    ledger.impression("q1", experiment.experiment_id, TEAMS, shown_ms=1000)
    ledger.impression("q2", experiment.experiment_id, TEAMS, shown_ms=1000)
    ledger.click("q2", experiment.experiment_id, 2, clicked_ms=1100)
    ledger.impression("q3", experiment.experiment_id, TEAMS, shown_ms=1500)
    assert ledger.settle(now_ms=1999) == []
    [updated] = ledger.settle(now_ms=2000)
    assert (updated.wins, updated.losses, updated.ties) == (1, 1, 0)
    ledger.click("q1", experiment.experiment_id, 1, clicked_ms=2100)  # too late: q1 is credited
    [updated] = ledger.settle(now_ms=2600)
    assert (updated.wins, updated.losses, updated.ties) == (1, 1, 1)
    assert ledger.counts.credited == 3 and ledger.counts.clicks_without_impression == 1


def test_unknown_or_ended_experiment_ids_are_counted_not_credited(book):
    experiment = book.start("a", "v1", "v2")
    ledger = Ledger(book, click_window_ms=10)
    before = UNCREDITED.labels("click", "unknown_experiment")._value.get()
    ledger.impression("q1", "no-such-experiment", TEAMS, shown_ms=0)
    ledger.click("q1", "no-such-experiment", 1, clicked_ms=0)
    ledger.click("q2", "", 1, clicked_ms=0)  # an ordinary search's click: neither credited nor an unknown id
    book.stop("a", "operator")
    ledger.click("q3", experiment.experiment_id, 1, clicked_ms=0)
    assert ledger.settle(now_ms=100) == []
    assert ledger.counts.unknown_experiment_clicks == 2 and ledger.counts.unknown_experiment_impressions == 1
    assert book.status("a").wins == 0
    assert UNCREDITED.labels("click", "unknown_experiment")._value.get() == before + 2


def test_a_click_without_the_experiment_id_joins_its_impression_by_query_id(book):
    experiment = book.start("a", "v1", "v2")
    ledger = Ledger(book, click_window_ms=10)
    ledger.impression("q1", experiment.experiment_id, TEAMS, shown_ms=0)
    ledger.click("q1", "", 1, clicked_ms=5)  # a client that does not echo the id
    [updated] = ledger.settle(now_ms=10)
    assert (updated.wins, updated.losses, updated.ties) == (1, 0, 0)


def test_clicks_whose_impression_never_comes_are_dropped_and_counted(book):
    experiment = book.start("a", "v1", "v2")
    ledger = Ledger(book, click_window_ms=10)
    ledger.click("q1", experiment.experiment_id, 1, clicked_ms=0)
    ledger.settle(now_ms=15)
    assert ledger.counts.clicks_without_impression == 0
    ledger.settle(now_ms=25)
    assert ledger.counts.clicks_without_impression == 1


def test_the_ledger_reads_feedback_events(book):
    from services.proto.feedrank.v1 import feedback_pb2 as fb

    experiment = book.start("a", "v1", "v2")
    ledger = Ledger(book, click_window_ms=100)
    shown = [fb.ShownResult(doc_id=f"d{r}", rank=r, team=team) for r, team in enumerate(TEAMS, start=1)]
    events = [
        fb.FeedbackEvent(query_id="q1", timestamp_ms=0, impression=fb.Impression(
            corpus_id="a", results=list(reversed(shown)), experiment_id=experiment.experiment_id)),
        fb.FeedbackEvent(query_id="q1", timestamp_ms=10, experiment_id=experiment.experiment_id,
                         click=fb.Click(doc_id="d4", rank=4)),
        fb.FeedbackEvent(query_id="q1", timestamp_ms=10, experiment_id="stale", click=fb.Click(doc_id="d2", rank=2)),
        # Searches outside the experiment: not its business, not counted as unknown either.
        fb.FeedbackEvent(query_id="q2", timestamp_ms=0, impression=fb.Impression(corpus_id="a", results=shown)),
        fb.FeedbackEvent(query_id="q2", timestamp_ms=5, click=fb.Click(doc_id="d1", rank=1)),
    ]
    for event in events:
        ledger.feed(event)
    [updated] = ledger.settle(now_ms=100)
    assert (updated.wins, updated.losses, updated.ties) == (1, 0, 0)  # rank 4 is the challenger's
    assert ledger.counts.unknown_experiment_clicks == 1 and ledger.counts.credited == 1
