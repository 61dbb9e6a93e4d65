"""Signed query_ids and caps, checked in process (the service-level checks are in test_forgery.py)."""

from __future__ import annotations

import time

import pytest

from services.common.config import FeedbackSettings
from services.common.errors import ErrorKind
from services.common.query_token import QueryIdError, QueryIdSigner, signing_key
from services.feedback.integrity import FeedbackGuard, Refused
from tests.feedback.helpers import QUERY, SIGNER, make_event, shown, signed_query_id


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _guard(clock: Clock, **limits) -> FeedbackGuard:
    return FeedbackGuard(SIGNER, FeedbackSettings(**limits), clock)


def _refusal(guard: FeedbackGuard, events) -> Refused:
    with pytest.raises(Refused) as refused:
        for i, event in enumerate(events):
            guard.check(event, i)
        guard.admit(events)
    return refused.value


def test_feedback_on_what_was_shown_passes(clock):
    guard = _guard(clock)
    qid = signed_query_id("ok")
    events = [make_event("i", "impression", query_id=qid), make_event("c", "click", query_id=qid, rank=1),
              make_event("c3", "click", query_id=qid, doc_id="d-1-3", rank=3),
              make_event("r", "rating", query_id=qid, doc_id="d-1-2", rank=0)]  # a rating's rank may be unknown
    for i, event in enumerate(events):
        guard.check(event, i)
    guard.admit(events)


@pytest.mark.parametrize("kind", ["click", "rating"])
def test_feedback_on_a_document_not_shown_is_refused_naming_doc_id(clock, kind):
    event = make_event("e", kind, query_id=signed_query_id("ok"), doc_id="never-shown")
    refused = _refusal(_guard(clock), [make_event("i", "impression", query_id=signed_query_id("ok")), event])
    assert (refused.kind, refused.field, refused.reason) == (
        ErrorKind.INVALID_ARGUMENT, f"events[1].{kind}.doc_id", "doc_not_shown")


def test_a_click_at_another_rank_than_shown_is_refused_naming_rank(clock):
    refused = _refusal(_guard(clock), [make_event("c", "click", query_id=signed_query_id("ok"), doc_id="d-1-2", rank=1)])
    assert (refused.field, refused.reason) == ("events[0].click.rank", "rank_mismatch")
    assert "rank 2" in refused.message


def test_tampered_foreign_and_made_up_query_ids_are_refused(clock):
    qid = signed_query_id("ok")
    flipped = qid[:10] + ("A" if qid[10] != "A" else "B") + qid[11:]
    foreign = QueryIdSigner(b"someone else's key").sign("scifact", QUERY, shown(), clock())
    for query_id in (flipped, foreign, "q-1", "q1", "q1" + "A" * 60, qid + "AAAA"):
        refused = _refusal(_guard(clock), [make_event("c", "click", query_id=query_id)])
        assert (refused.field, refused.reason) == ("events[0].query_id", "query_id_invalid"), query_id


def test_an_expired_query_id_is_refused(clock):
    qid = SIGNER.sign("scifact", QUERY, shown(), clock.now - 3601)
    refused = _refusal(_guard(clock, query_id_ttl_s=3600), [make_event("c", "click", query_id=qid)])
    assert (refused.field, refused.reason) == ("events[0].query_id", "query_id_expired")
    assert "expired" in refused.message


@pytest.mark.parametrize("forge, field", [
    (lambda imp: setattr(imp, "query", "another query"), "impression.query"),
    (lambda imp: setattr(imp, "corpus_id", "nfcorpus"), "impression.query"),
    (lambda imp: setattr(imp.results[0], "doc_id", "promoted"), "impression.results"),
    (lambda imp: imp.results.add(doc_id="promoted", rank=4), "impression.results"),
    (lambda imp: (setattr(imp.results[0], "rank", 2), setattr(imp.results[1], "rank", 1)), "impression.results"),
    (lambda imp: imp.results.pop(), "impression.results"),
])
def test_an_impression_the_retriever_did_not_sign_is_refused(clock, forge, field):
    event = make_event("i", "impression", query_id=signed_query_id("ok"))
    forge(event.impression)
    refused = _refusal(_guard(clock), [event])
    assert (refused.field, refused.reason) == (f"events[0].{field}", "impression_forged")


def test_per_query_cap_counts_each_event_once(clock):
    guard = _guard(clock, max_events_per_query=3)
    qid = signed_query_id("capped")
    first = [make_event(f"c{i}", "click", query_id=qid) for i in range(3)]
    guard.admit(first)
    guard.admit(first[:2])  # a client's retry of events already counted
    refused = _refusal(guard, [make_event("c3", "click", query_id=qid)])
    assert (refused.field, refused.reason) == ("events[0].query_id", "query_cap")
    # Another query_id has its own count.
    guard.admit([make_event("x", "click", query_id=signed_query_id("other"))])


def test_per_session_cap_is_a_window(clock):
    guard = _guard(clock, max_events_per_session=2, session_window_s=60)
    guard.admit([make_event("a", "click", query_id=signed_query_id("s1")),
                 make_event("b", "click", query_id=signed_query_id("s2"))])
    refused = _refusal(guard, [make_event("c", "click", query_id=signed_query_id("s3"))])
    assert (refused.kind, refused.field, refused.reason) == (
        ErrorKind.RESOURCE_EXHAUSTED, "events[0].session_id", "session_cap")
    clock.now += 61
    guard.admit([make_event("c", "click", query_id=signed_query_id("s3"))])


def test_one_impression_per_query_id_and_undo_of_an_unrecorded_batch(clock):
    guard = _guard(clock, max_events_per_query=1)
    qid = signed_query_id("undo")
    undo = guard.admit([make_event("i1", "impression", query_id=qid), make_event("c1", "click", query_id=qid)])
    guard.admit([make_event("i1", "impression", query_id=qid)])  # the same impression resent
    assert _refusal(guard, [make_event("i2", "impression", query_id=qid)]).reason == "impression_duplicate"
    undo()  # the batch was not recorded after all: its counts are released
    guard.admit([make_event("i2", "impression", query_id=qid), make_event("c2", "click", query_id=qid)])


def test_signing_key_is_made_once_private_and_shared(tmp_path):
    first = signing_key("", tmp_path)
    assert signing_key("", tmp_path) == first and len(first) == 64
    assert (tmp_path / "feedback-signing.key").stat().st_mode & 0o777 == 0o600
    assert signing_key("configured", tmp_path) == b"configured"
    token = QueryIdSigner(first).sign("c", "q", ["d"], time.time())
    QueryIdSigner(signing_key("", tmp_path)).open(token, time.time(), 60, 60)
    with pytest.raises(QueryIdError):
        QueryIdSigner(b"configured").open(token, time.time(), 60, 60)


def test_a_query_id_is_compact(clock):
    token = SIGNER.sign("scifact", "a long query " * 50, [f"doc-{i}" * 20 for i in range(10)], clock.now)
    assert len(token) <= 110 and token.isascii()
