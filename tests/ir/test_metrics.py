"""The metric code against ranx on the same runs, plus hand-checked cases."""

from __future__ import annotations

import random

import pytest

from services.ir import metrics


def _random_case(seed: int, queries: int = 40, docs: int = 150):
    rng = random.Random(seed)
    qrels, run = {}, {}
    for q in range(queries):
        qid = f"q{q}"
        pool = [f"d{d}" for d in range(docs)]
        qrels[qid] = {d: rng.choice([0, 1, 1, 2, 3]) for d in rng.sample(pool, rng.randint(1, 6))}
        # Distinct scores: tie-breaking is not part of what ranx specifies.
        scores = rng.sample(range(10_000), 120)
        run[qid] = {d: s / 100 for d, s in zip(rng.sample(pool, 120), scores)}
    # A judged query the system returned nothing for scores 0, in both implementations.
    qrels["empty"] = {"d1": 1}
    run["empty"] = {"zz": 1.0}
    return qrels, run


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_means_match_ranx(seed):
    ranx = pytest.importorskip("ranx")
    qrels, run = _random_case(seed)
    ours = metrics.evaluate(run, qrels, metrics.DEFAULT_METRICS)
    names = {m: m.replace("hit@", "hit_rate@") for m in metrics.DEFAULT_METRICS}
    theirs = ranx.evaluate(ranx.Qrels(qrels), ranx.Run(run), list(names.values()))
    for ours_name, ranx_name in names.items():
        assert ours[ours_name] == pytest.approx(float(theirs[ranx_name]), abs=1e-9), ours_name


def test_per_query_matches_ranx():
    ranx = pytest.importorskip("ranx")
    qrels, run = _random_case(7)
    ours = metrics.per_query(run, qrels, "ndcg@10")
    ranx_run = ranx.Run(run)
    ranx.evaluate(ranx.Qrels(qrels), ranx_run, "ndcg@10")
    theirs = ranx_run.scores["ndcg@10"]
    assert set(ours) == set(theirs)
    for qid, value in ours.items():
        assert value == pytest.approx(float(theirs[qid]), abs=1e-9)


def test_hand_computed_values():
    qrels = {"q": {"a": 1, "c": 2, "z": 0}}
    run = {"q": {"x": 0.9, "a": 0.8, "c": 0.1}}
    # ranks: x(0) a(1) c(2)  -> DCG = 1/log2(3) + 2/log2(4); IDCG = 2 + 1/log2(3)
    dcg = 1 / 1.5849625007211562 + 2 / 2
    idcg = 2 + 1 / 1.5849625007211562
    assert metrics.evaluate(run, qrels, ["ndcg@10"])["ndcg@10"] == pytest.approx(dcg / idcg)
    assert metrics.evaluate(run, qrels, ["mrr@10"])["mrr@10"] == pytest.approx(0.5)
    assert metrics.evaluate(run, qrels, ["mrr@1"])["mrr@1"] == 0.0
    assert metrics.evaluate(run, qrels, ["recall@2"])["recall@2"] == pytest.approx(0.5)
    assert metrics.evaluate(run, qrels, ["hit@1", "hit@2"]) == {"hit@1": 0.0, "hit@2": 1.0}


def test_queries_without_relevant_documents_or_results_score_zero():
    qrels = {"judged": {"a": 1}, "all-zero": {"b": 0}, "missing": {"c": 1}}
    run = {"judged": {"a": 1.0}, "all-zero": {"b": 1.0}, "unjudged": {"a": 1.0}}
    values = metrics.per_query(run, qrels, "hit@10")
    assert values == {"judged": 1.0, "all-zero": 0.0, "missing": 0.0}


def test_ties_are_broken_by_doc_id():
    assert metrics.ranked({"b": 1.0, "a": 1.0, "c": 2.0}) == ["c", "a", "b"]


@pytest.mark.parametrize("name", ["ndcg", "ndcg@0", "map@10", "recall@x"])
def test_unknown_metric_names_are_refused(name):
    with pytest.raises(ValueError):
        metrics.parse_metric(name)
