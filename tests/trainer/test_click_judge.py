"""The click judge's estimators against simulated users whose truth is known, and its bad input."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from pydantic import ValidationError

from services.common.config import Settings, TrainingSettings, validated
from services.common.errors import ErrorKind, FeedrankError
from services.events.store import EventStore
from services.proto.feedrank.v1 import feedback_pb2
from services.trainer.click_judge import ClickJudge, ips_dcg
from services.trainer.click_log import LoggedClick, LoggedSearch, held_out
from services.trainer.judges import agreement, declared_judge, describe_agreement
from services.trainer.propensity import SMOOTHING_GRID, estimate
from tests.trainer.conftest import build_corpus, make_settings


def true_propensity(rank: int) -> float:
    return 1.0 / rank


def simulate(kind: str, sessions: int, share: float, seed: int, depth: int = 20,
             examination=true_propensity) -> list[LoggedSearch]:
    """Position-based users on 300 queries of 20 ranked documents, 1-2 relevant among the top 6."""
    rng = random.Random(seed)
    queries = []
    for q in range(300):
        docs = [f"q{q}-d{i}" for i in range(20)]
        queries.append((docs, set(rng.sample(docs[:6], rng.randint(1, 2)))))
    out = []
    for s in range(sessions):
        q = rng.randrange(len(queries))
        docs, relevant = queries[q]
        ranked = list(range(1, 21))
        intervention = kind if rng.random() < share else ""
        if intervention == "rand_pair":
            k = rng.randint(2, depth)
            ranked[0], ranked[k - 1] = ranked[k - 1], ranked[0]
        elif intervention == "top_n_shuffle":
            head = ranked[:depth]
            rng.shuffle(head)
            ranked[:depth] = head
        shown = [docs[r - 1] for r in ranked]
        clicks = [LoggedClick(d, rank, 30_000) for rank, d in enumerate(shown, 1)
                  if rng.random() < examination(rank) and rng.random() < (0.9 if d in relevant else 0.05)]
        out.append(LoggedSearch(f"i{s}", f"s{s}", s, f"query {q}", shown, ranked, intervention,
                                depth if intervention else 0, clicks))
    return out


# Demo-sized logs: `make demo JUDGE=clicks` measures on about 8,000 searches, 30% of them shuffled. Per-rank
# ratios alone are 20-50% off at ranks 8-10 there; the cross-validated smooth fit lands within 15%.
# A RandPair swap informs one rank per search, so it needs more searches for the same precision.
@pytest.mark.parametrize(("kind", "sessions", "share"), [("top_n_shuffle", 8000, 0.3), ("rand_pair", 30_000, 0.5)])
def test_propensities_are_recovered_from_interventions(kind, sessions, share):
    searches = simulate(kind, sessions, share=share, seed=5)
    measured = estimate("sim", searches, 20, 30, seed=1)
    assert measured.intervened == pytest.approx(sessions * share, rel=0.05)
    for rank in range(1, 11):
        assert measured.at(rank) == pytest.approx(true_propensity(rank), rel=0.15), (rank, measured.propensity)
    covered = sum(lo <= true_propensity(r) <= hi for r, lo, hi in zip(measured.ranks, measured.ci_low, measured.ci_high))
    assert covered >= 15  # 95% intervals: about 19 of 20 ranks on average
    widths = [(hi - lo) / true_propensity(r) for r, lo, hi in zip(measured.ranks, measured.ci_low, measured.ci_high)]
    assert max(widths[:10]) < 0.6  # and informative, not trivially wide


def test_the_smoothing_keeps_a_shape_the_clicks_show():
    """A fold after rank 4 (not a power law): cross-validation weakens the penalty and the step survives."""
    def folded(rank: int) -> float:
        return 1.0 / rank ** 0.3 if rank <= 4 else 0.25 / rank ** 0.3

    measured = estimate("sim", simulate("top_n_shuffle", 30_000, share=0.5, seed=3, examination=folded), 20, 10, seed=1)
    assert measured.smoothing < max(SMOOTHING_GRID)
    for rank in range(1, 11):
        assert measured.at(rank) == pytest.approx(folded(rank), rel=0.2), (rank, measured.propensity)
    assert measured.at(5) < 0.5 * measured.at(4)


def test_without_interventions_nothing_is_measured():
    measured = estimate("sim", simulate("rand_pair", 2000, share=0.0, seed=2), 20, 10, seed=1)
    assert not measured.measured() and measured.at(5) is None


def test_ips_dcg_is_unbiased_for_a_new_ranking():
    """Clicks logged under one ranking estimate another ranking's DCG@10 with click-through relevance."""
    rng = random.Random(11)
    docs = [f"d{i}" for i in range(12)]
    attractive = {d: rng.random() for d in docs}
    logged = {d: r for r, d in enumerate(docs, 1)}
    new = {d: r for r, d in enumerate(sorted(docs, key=attractive.get, reverse=True), 1)}
    truth = sum(attractive[d] / math.log2(1 + r) for d, r in new.items() if r <= 10)
    naive, corrected = [], []
    for _ in range(40_000):
        clicked = [d for d in docs if rng.random() < true_propensity(logged[d]) * attractive[d]]
        corrected.append(ips_dcg(new, [(d, 1 / true_propensity(logged[d])) for d in clicked]))
        naive.append(ips_dcg(new, [(d, 1.0) for d in clicked]))
    assert np.mean(corrected) == pytest.approx(truth, rel=0.03)
    assert np.mean(naive) < 0.7 * truth  # what position bias does to an uncorrected click metric


def test_holdout_is_a_stable_share_of_sessions():
    ids = [f"session-{i}" for i in range(5000)]
    share = np.mean([held_out(s, 0.2) for s in ids])
    assert 0.18 < share < 0.22
    assert [held_out(s, 0.2) for s in ids[:50]] == [held_out(s, 0.2) for s in ids[:50]]
    assert not held_out("anonymous", 0.99)  # the no-session bucket is many users, never held out whole


@pytest.mark.parametrize(("field", "value"), [("judge", "votes"), ("judge_holdout_share", 0.0),
                                               ("judge_holdout_share", 1.0), ("judge_holdout_share", -0.5)])
def test_bad_judge_settings_are_refused_naming_the_field(field, value, monkeypatch):
    with pytest.raises(FeedrankError) as refused:
        validated("training", TrainingSettings, TrainingSettings(), {field: value})
    assert refused.value.kind == ErrorKind.INVALID_ARGUMENT and refused.value.field == f"training.{field}"
    monkeypatch.setenv(f"FEEDRANK_TRAINING__{field.upper()}", str(value))
    with pytest.raises(ValidationError, match=f"training.{field}"):
        Settings()


def test_auto_judge_is_labels_only_where_the_corpus_declares_them(data_dir):
    build_corpus(data_dir)
    settings = make_settings(data_dir)
    assert declared_judge(settings, "tiny") == "labels"  # the tiny corpus has qrels/test.tsv
    unlabelled = make_settings(data_dir, eval_split="missing")
    assert declared_judge(unlabelled, "tiny") == "clicks"
    assert declared_judge(make_settings(data_dir, judge="labels", eval_split="missing"), "tiny") == "labels"


def test_too_few_sessions_to_judge_on_is_a_failed_precondition(data_dir):
    build_corpus(data_dir)
    settings = make_settings(data_dir, judge="clicks", judge_min_sessions=40)
    store = EventStore.open(settings)
    try:
        events, n = [], 0
        while sum(held_out(f"user-{i}", 0.2) for i in range(n)) < 3:
            n += 1
        for i in range(n):
            events.append(feedback_pb2.FeedbackEvent(
                event_id=f"i{i}", query_id=f"q{i}", session_id=f"user-{i}", timestamp_ms=1_700_000_000_000 + i,
                # One query per session: a query first searched outside the share is never judged.
                impression=feedback_pb2.Impression(corpus_id="tiny", query=f"bees {i}", results=[
                    feedback_pb2.ShownResult(doc_id="bees-0", rank=1)])))
            events.append(feedback_pb2.FeedbackEvent(
                event_id=f"c{i}", query_id=f"q{i}", session_id=f"user-{i}", timestamp_ms=1_700_000_000_001 + i,
                click=feedback_pb2.Click(doc_id="bees-0", rank=1, dwell_ms=60_000)))
        store.add(events)
        with pytest.raises(FeedrankError) as refused:
            ClickJudge(settings, store, evaluator=None).evaluate("tiny", "v1", "fused")
    finally:
        store.close()
    assert refused.value.kind == ErrorKind.FAILED_PRECONDITION
    assert "has 3 held-out sessions" in str(refused.value) and "needs 40" in str(refused.value)


class _Labels:
    """The labelled evaluator's answer for one comparison (what Evaluator.evaluate returns)."""

    def __init__(self, gain: float, p: float):
        self.gain, self.p = gain, p

    def evaluate(self, corpus_id, challenger, champion):
        return {"ndcg_gain": self.gain, "p_value": self.p, "queries": 40, "eval_id": "e1",
                "metrics": {"challenger": {"ndcg@10": 0.5 + self.gain}, "champion": {"ndcg@10": 0.5},
                            "fused": {"ndcg@10": 0.45}}}


class _Clicks:
    def __init__(self, gain: float | None):
        self.gain = gain

    def evaluate(self, corpus_id, challenger, champion):
        if self.gain is None:
            raise FeedrankError(ErrorKind.FAILED_PRECONDITION, "corpus tiny has 3 held-out sessions ...")
        return {"gain": self.gain, "p_value": 0.01, "eval_id": "c1", "sessions": 80, "searches": 90, "clicks": 120,
                "judged_queries": 30, "kept_from_mining": 70, "learned_dropped": 12,
                "propensity_clip": 10.0, "metrics": {n: {"ips_dcg@10": 1.0} for n in ("challenger", "champion", "fused")}}


@pytest.mark.parametrize(("labelled", "clicks", "beside"), [
    ((0.04, 0.01), 0.3, {"available": True, "labelled_significant": True, "same_sign": True}),
    ((0.04, 0.01), -0.2, {"available": True, "labelled_significant": True, "same_sign": False}),
    ((-0.01, 0.7), 0.1, {"available": True, "labelled_significant": False, "same_sign": False}),
    ((0.04, 0.01), None, {"available": False}),
])
def test_where_labels_decide_the_click_verdict_is_recorded_beside(data_dir, labelled, clicks, beside):
    from services.trainer.judges import Judges

    build_corpus(data_dir)
    verdict = Judges(make_settings(data_dir), _Labels(*labelled), _Clicks(clicks)).verdict("tiny", "v2", "fused")
    assert (verdict.judge, verdict.gain, verdict.p_value) == ("labels", *labelled)
    assert {k: verdict.beside[k] for k in beside} == beside
    assert verdict.numbers["ndcg_gain"] == labelled[0]
    by_clicks = Judges(make_settings(data_dir, judge="clicks"), _Labels(*labelled), _Clicks(0.3)).verdict(
        "tiny", "v2", "fused")
    assert (by_clicks.judge, by_clicks.gain, by_clicks.beside) == ("clicks", 0.3, {})
    assert by_clicks.numbers["sessions"] == 80 and by_clicks.metric.startswith("IPS-DCG@10")
    # What the holdout kept apart is recorded with the judge's numbers.
    assert {k: by_clicks.numbers[k] for k in ("judged_queries", "kept_from_mining", "learned_dropped")} == \
        {"judged_queries": 30, "kept_from_mining": 70, "learned_dropped": 12}


def test_agreement_counts_the_significant_labelled_decisions_the_click_judge_signs_alike():
    def decision(corpus, judge, beside):
        return {"corpus_id": corpus, "judge": judge, "beside": beside}

    agree = {"available": True, "labelled_significant": True, "same_sign": True}
    history = [
        decision("a", "labels", agree),
        decision("a", "labels", {**agree, "same_sign": False}),
        decision("a", "labels", {**agree, "labelled_significant": False, "same_sign": False}),
        decision("a", "labels", {"available": False, "reason": "too few sessions"}),
        decision("a", "clicks", {}),  # decided by clicks: nothing to agree with
        decision("b", "labels", agree),
        {"corpus_id": "a", "action": "rollback"},
    ]
    assert agreement(history) == {"challengers": 5, "with_click_verdict": 4, "labelled_significant": 3,
                                  "agree_on_sign": 2}
    assert agreement(history, "b") == {"challengers": 1, "with_click_verdict": 1, "labelled_significant": 1,
                                       "agree_on_sign": 1}
    assert "2 of 3 significant labelled differences agree on sign" in describe_agreement(agreement(history))
