"""Mining rules on hand-built event logs, golden files and qrels (no model, no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.common.errors import ErrorKind, FeedrankError
from services.events.store import EventStore
from services.proto.feedrank.v1 import feedback_pb2
from services.trainer.candidates import TRAINER_SESSION, FileCandidates
from services.trainer.click_log import held_out
from services.trainer.mining import Miner, corpus_triplet_files, judge_log, load_triplets
from services.trainer.propensity import load
from tests.trainer.conftest import TEST_Q, TRAIN_Q, build_corpus, make_settings

_seq = iter(range(10**6))


def impression(qid, query, docs, corpus="tiny", session="s1", intervention="", ranked=None):
    """`ranked`: the rank the ranking gave each shown document (an intervention's reorder); default as shown."""
    ranked = ranked or list(range(1, len(docs) + 1))
    return feedback_pb2.FeedbackEvent(
        event_id=f"e{next(_seq)}", query_id=qid, session_id=session, timestamp_ms=1_700_000_000_000 + next(_seq),
        impression=feedback_pb2.Impression(corpus_id=corpus, query=query, results=[
            feedback_pb2.ShownResult(doc_id=d, rank=r, ranked_rank=k) for r, (d, k) in enumerate(zip(docs, ranked), 1)],
            intervention=intervention, intervention_depth=len(docs) if intervention else 0))


def click(qid, doc, rank, dwell_ms):
    return feedback_pb2.FeedbackEvent(event_id=f"e{next(_seq)}", query_id=qid, session_id="s1",
                                      timestamp_ms=1_700_000_000_000 + next(_seq),
                                      click=feedback_pb2.Click(doc_id=doc, rank=rank, dwell_ms=dwell_ms))


def rating(qid, doc, value):
    return feedback_pb2.FeedbackEvent(event_id=f"e{next(_seq)}", query_id=qid, session_id="s1",
                                      timestamp_ms=1_700_000_000_000 + next(_seq),
                                      rating=feedback_pb2.Rating(doc_id=doc, rating=value))


SHOWN = ["bees-1", "bees-2", "bees-0", "owls-0", "owls-1"]


@pytest.fixture
def settings(data_dir):
    build_corpus(data_dir, extra_queries=["how do bees make honey"])
    return make_settings(data_dir)


@pytest.fixture
def store(settings):
    store = EventStore.open(settings)
    yield store
    store.close()


def judge(store, settings, skip=frozenset()):
    return judge_log(list(store.impressions("tiny")), list(store.clicks("tiny")), list(store.ratings("tiny")),
                     settings.training, set(skip))


def test_skip_above_dwell_and_ratings(store, settings):
    store.add([
        impression("q1", "how do bees make honey", SHOWN),
        click("q1", "bees-0", 3, 30_000),  # long dwell: positive; ranks 1-2 were skipped above it
        click("q1", "owls-0", 4, 500),  # short dwell: not a positive, but it was examined
    ])
    [j], skipped = judge(store, settings)
    assert j.positives == {"bees-0": 1.0}
    # Shown above the lowest click (rank 4) and not clicked: bees-1, bees-2. owls-1 (rank 5,
    # below every click) says nothing and is not a negative.
    assert j.negatives == ["bees-1", "bees-2"]
    assert skipped == {}


def test_ratings_override_and_unclicked_impressions(store, settings):
    store.add([
        impression("q1", "how do bees make honey", SHOWN),
        rating("q1", "owls-1", 5), rating("q1", "bees-1", 1), rating("q1", "bees-2", 3),
        impression("q2", "how do bees make honey", SHOWN),  # no interaction at all: no labels
        impression("q3", "how do bees make honey", SHOWN),
        click("q3", "bees-1", 1, 50),  # only a short click: no positive
    ])
    judgements, skipped = judge(store, settings)
    assert [(j.query_id, j.positives, j.negatives) for j in judgements] == [("q1", {"owls-1": 1.0}, ["bees-1"])]
    assert skipped == {"no_interaction": 1, "no_positive": 1}


def test_a_rated_positive_is_never_a_skip_negative(store, settings):
    store.add([impression("q1", "how do bees make honey", SHOWN), rating("q1", "bees-1", 5),
               click("q1", "bees-0", 3, 20_000)])
    [j], _ = judge(store, settings)
    assert j.positives == {"bees-1": 1.0, "bees-0": 1.0}
    assert j.negatives == ["bees-2"]


def test_propensity_weights_are_the_measured_ones(store, data_dir):
    """Weights come from the intervened searches (the result ranked first, shown first in 4 shuffles and third in
    4, is clicked 4 times at rank 1 and once at rank 3: p(3) = 1/4), not from the click-through rates of the
    ranking's own order."""
    settings = make_settings(data_dir, mining={"propensity_weights": True}, propensity_clip=5.0)
    miner = Miner(settings, FileCandidates(settings.training.candidates_file), store)
    store.add([impression("q9", "how do bees make honey", SHOWN), click("q9", SHOWN[2], 3, 20_000)])
    [unweighted] = load_triplets(miner.mine("tiny", ["events"]).files)
    assert unweighted.weight == 1.0  # nothing intervened yet: nothing measured, clicks unweighted
    swapped = [SHOWN[2], SHOWN[1], SHOWN[0], *SHOWN[3:]]
    events = []
    for i in range(4):
        events.append(impression(f"q{i}", "how do bees make honey", SHOWN, intervention="top_n_shuffle"))
        events.append(click(f"q{i}", SHOWN[0], 1, 20_000))
        events.append(impression(f"r{i}", "how do bees make honey", swapped, intervention="top_n_shuffle",
                                 ranked=[3, 2, 1, 4, 5]))
    events.append(click("r0", SHOWN[0], 3, 20_000))
    store.add(events)
    weights: dict[str, list[float]] = {}
    for t in load_triplets(miner.mine("tiny", ["events"]).files):
        weights.setdefault(t.positive_doc_id, []).append(t.weight)
    p3 = load(settings, "tiny").at(3)
    assert p3 == pytest.approx(0.25, rel=0.05)  # the smoothing moves a five-rank toy fit by a few percent
    assert weights[SHOWN[2]] == [pytest.approx(1 / p3, rel=1e-3)]  # q9's click at rank 3, weighted now that rank 3 is measured
    assert sorted(weights[SHOWN[0]]) == [1.0, 1.0, 1.0, 1.0, pytest.approx(1 / p3, rel=1e-3)]  # 4 clicks at rank 1, 1 at 3


def test_held_out_sessions_are_never_mined(store, settings):
    share = settings.training.judge_holdout_share
    sessions = [f"user-{i}" for i in range(200)]
    kept = [s for s in sessions if not held_out(s, share)]
    assert 0.1 < 1 - len(kept) / len(sessions) < 0.3  # about the configured share
    store.add([e for i, s in enumerate(sessions) for e in (
        impression(f"q{i}", "how do bees make honey", SHOWN, session=s), click(f"q{i}", "bees-0", 3, 30_000))])
    judgements, skipped = judge(store, settings)
    assert {j.query_id for j in judgements} == {f"q{i}" for i, s in enumerate(sessions) if s in kept}
    assert skipped == {"judge_holdout": len(sessions) - len(kept)}


def test_eval_queries_and_trainer_searches_are_never_mined(store, settings):
    eval_text = TEST_Q["te-bees"]
    store.add([
        impression("q1", eval_text.upper(), SHOWN), click("q1", "bees-0", 3, 30_000),
        impression("q2", "how do bees make honey", SHOWN, session=TRAINER_SESSION), click("q2", "bees-0", 3, 30_000),
    ])
    miner = Miner(settings, FileCandidates(settings.training.candidates_file), store)
    result = miner.mine("tiny", ["events"])
    assert result.counts == {"events": 0}
    assert result.skipped == {"events.eval_query": 1}


def test_events_source_writes_triplets_with_texts(store, settings):
    store.add([impression("q1", "how do bees make honey", SHOWN), click("q1", "bees-0", 3, 30_000)])
    result = Miner(settings, FileCandidates(settings.training.candidates_file), store).mine("tiny", ["events"])
    [t] = load_triplets(result.files)
    assert (t.query, t.positive_doc_id, t.source, t.weight) == ("how do bees make honey", "bees-0", "events", 1.0)
    assert t.positive_text == "bees\nhoney bees dance to show where flowers are"
    assert t.negative_doc_ids == ["bees-1", "bees-2"]
    row = json.loads(open(result.files[0]).readline())
    assert set(row) == {"query", "positive_text", "positive_doc_id", "negative_texts", "negative_doc_ids", "source",
                        "weight"}


def test_qrels_hard_negatives_margin_and_no_eval_split(settings):
    miner = Miner(settings, FileCandidates(settings.training.candidates_file))
    result = miner.mine("tiny", ["qrels"])
    triplets = load_triplets(result.files)
    assert len(triplets) == 8 and {t.source for t in triplets} == {"qrels"}
    assert not {t.query for t in triplets} & set(TEST_Q.values())
    for t in triplets:
        assert t.positive_doc_id not in t.negative_doc_ids and len(t.negative_doc_ids) == 2
    with pytest.raises(FeedrankError) as err:
        miner.mine("tiny", ["qrels"], qrels_split="test")
    assert err.value.kind == ErrorKind.INVALID_ARGUMENT and err.value.field == "qrels_split"


def test_margin_filter_drops_near_ties(data_dir):
    # A ratio of 1.0 keeps everything below the positive's score; the positive ranks first with
    # the overlap scorer, so a strict ratio (0.5) leaves no hard negative and random ones fill in.
    build_corpus(data_dir)
    strict = make_settings(data_dir, mining={"hard_negative_max_ratio": 0.5, "random_negative_share": 0.0})
    triplets = load_triplets(Miner(strict, FileCandidates(strict.training.candidates_file)).mine("tiny", ["qrels"]).files)
    loose = make_settings(data_dir, mining={"hard_negative_max_ratio": 1.0, "random_negative_share": 0.0})
    loose_t = load_triplets(Miner(loose, FileCandidates(loose.training.candidates_file)).mine("tiny", ["qrels"]).files)
    ranked = json.loads((data_dir / "candidates.json").read_text())["tiny"]
    for t in loose_t:  # the loose run takes the top-ranked non-positives: the hard negatives
        top = [c["doc_id"] for c in ranked[t.query] if c["doc_id"] != t.positive_doc_id][:2]
        assert t.negative_doc_ids == top
    assert [t.negative_doc_ids for t in triplets] != [t.negative_doc_ids for t in loose_t]


def test_golden_and_sources_never_overwritten(settings, data_dir):
    golden = data_dir / "golden.json"
    golden.write_text(json.dumps([
        {"q": "how do bees make honey", "repo": "tiny", "expect_paths": ["bees-0"]},
        {"q": TEST_Q["te-owls"], "repo": "tiny", "expect_paths": ["owls-0"]},  # an eval query: skipped
        {"q": "how do bees make honey", "repo": "other", "expect_paths": ["x"]},  # another corpus
    ]))
    miner = Miner(settings, FileCandidates(settings.training.candidates_file))
    first = miner.mine("tiny", ["golden", "qrels"], golden_path=str(golden))
    second = miner.mine("tiny", ["golden"], golden_path=str(golden))
    assert first.counts == {"golden": 1, "qrels": 8} and first.skipped == {"golden.eval_query": 1}
    assert len(first.files) == 2 and len(second.files) == 1 and not set(first.files) & set(second.files)
    for path in first.files:  # the first run's files are untouched
        assert load_triplets([path])
    # Each mining run re-reads its whole source: a run trains on the newest file of each.
    assert corpus_triplet_files(settings, "tiny") == sorted(Path(f) for f in [second.files[0], first.files[1]])
    other = data_dir / "golden-more.json"  # another golden file is another source: both train
    other.write_text(json.dumps([{"q": TRAIN_Q["tr-owls"], "repo": "tiny", "expect_paths": ["owls-0"]}]))
    third = miner.mine("tiny", ["golden"], golden_path=str(other))
    share = miner.mine("tiny", ["qrels"], qrels_split="train@0.5")  # a share re-reads its split: replaces it
    assert corpus_triplet_files(settings, "tiny") == sorted(
        Path(f) for f in [second.files[0], third.files[0], share.files[0]])
    with pytest.raises(FileExistsError):
        Miner._write(Path(first.files[0]), [])


def test_bad_requests_name_the_field(settings):
    miner = Miner(settings, FileCandidates(settings.training.candidates_file))
    for kwargs, field in [(dict(sources=["nope"]), "sources"), (dict(sources=["golden"]), "golden_path")]:
        with pytest.raises(FeedrankError) as err:
            miner.mine("tiny", **kwargs)
        assert err.value.kind == ErrorKind.INVALID_ARGUMENT and err.value.field == field
    with pytest.raises(FeedrankError) as err:
        miner.mine("no-such-corpus", ["qrels"])
    assert err.value.field == "corpus_id"


def test_feedback_on_a_document_the_impression_did_not_show_teaches_nothing(store, data_dir):
    """Defence in depth behind the feedback service's signed query_ids: forged clicks and ratings
    (a document never shown for that query_id) change neither labels nor propensity weights."""
    settings = make_settings(data_dir, mining={"propensity_weights": True}, propensity_clip=5.0)
    honest = []
    for i in range(3):
        honest += [impression(f"q{i}", "how do bees make honey", SHOWN[:3]), click(f"q{i}", SHOWN[0], 1, 20_000)]
    honest.append(click("q0", SHOWN[2], 3, 20_000))
    store.add(honest)
    before, _ = judge(store, settings)
    forged = [click(f"q{i % 3}", "owls-1", 1 + i % 3, 60_000) for i in range(30)]
    forged += [rating(f"q{i}", "owls-1", 5) for i in range(3)]
    store.add(forged)
    after, skipped = judge(store, settings)
    assert [(j.query_id, j.positives, j.negatives) for j in after] == \
        [(j.query_id, j.positives, j.negatives) for j in before]
    assert all("owls-1" not in j.positives for j in after)
    assert skipped["not_shown"] == len(forged)
