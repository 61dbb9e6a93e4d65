"""A head over named legs scores exactly as the two-leg head did: an existing version's linear head (its
manifest.json as a demo run wrote it, the head in `extra`) and the same candidates give identical scores
through the old two-leg columns (`_two_leg_linear`, services/reranker/combine.py at 508cded, verbatim)
and through today's candidates; and a head fitted on the first legs keeps its legs when one is added."""

from __future__ import annotations

import json

import numpy as np
import pytest

from services.common.legs import LEGS, Candidate, LegHit
from services.engine.manifest import LinearHead
from services.registry.store import FileRegistry
from services.reranker import combine
from services.reranker.combine import final_scores, head_legs, leg_feature_names

# The linear head of a query-adapter version a propensity demo run published (v20261207-190515-640558).
DEMO_HEAD = {
    "coef": [0.06982864314864622, 1.319444988325974, 0.10805899371328456, 0.8727935856387187, 0.741672193742361,
             0.36367704687679336, 0.3953196584142539],
    "depth": 30, "intercept": -3.708112715832457,
    "mean": [13.910785671419358, 0.3317147672251176, 0.011004273130047822, 0.2954540619895527, 0.3928981497389108,
             0.010955200316035956, 0.021959473446083837],
    "scale": [9.188119727907656, 0.265505640546649, 0.004666616755155312, 0.13654979765354372, 0.26968922968438025,
              0.004716882401296401, 0.005614928894961387],
}
DEMO_MANIFEST = {
    "version_id": "v20261207-190515-640558", "kind": "bi-encoder", "base_model": "b (adapter)", "max_length": 256,
    "activation": "identity", "files": {}, "created_at": "2026-12-07T19:05:15Z", "run_id": "r1", "corpus_id": "scifact",
    "extra": {"by_source": {"events": 1636}, "doc_tower_is_dense_leg": True, "linear_head": DEMO_HEAD,
              "query_max_length": 64, "recipe": "query-adapter", "vector_leg_adapter": True, "triplets": 1636},
}

# -- the two-leg head as it was (the oracle) -----------------------------------------------------------


def _minmax(x):
    if x.size == 0:
        return x
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / max(hi - lo, 1e-9)


def _fused_signal(fused_scores, n):
    if fused_scores is not None and any(s != 0 for s in fused_scores):
        return np.asarray(fused_scores, dtype=np.float32)
    return -np.arange(n, dtype=np.float32)


def _two_leg_features(model_scores, lexical_score, lexical_rank, vector_rank, fused_score):
    lexical = np.where(lexical_rank > 0, lexical_score, 0.0)
    vector = np.where(vector_rank > 0, model_scores, 0.0)

    def rr(rank):
        return np.where(rank > 0, 1.0 / (60.0 + np.maximum(rank, 1)), 0.0)

    return np.stack([lexical, _minmax(lexical), rr(lexical_rank), vector, _minmax(vector), rr(vector_rank),
                     fused_score], axis=1).astype(np.float64)


def _two_leg_linear(model_scores, rows, head):
    """rows: (lexical_score, lexical_rank, vector_rank, fused_score) per candidate, as `Legs.of` took them."""
    a = np.asarray(rows, dtype=np.float64).reshape(-1, 4)
    lexical_score, lexical_rank, vector_rank, fused_score = a[:, 0], a[:, 1].astype(int), a[:, 2].astype(int), a[:, 3]
    fused = _fused_signal(fused_score, len(model_scores))
    order = np.argsort(-fused, kind="stable")
    top, rest = order[: int(head.depth)], order[int(head.depth):]
    X = _two_leg_features(np.asarray(model_scores, dtype=np.float64)[top], lexical_score[top], lexical_rank[top],
                          vector_rank[top], fused_score[top])
    z = ((X - np.asarray(head.mean)) / np.asarray(head.scale)) @ np.asarray(head.coef) + float(head.intercept)
    out = np.empty(len(model_scores), dtype=np.float32)
    out[top] = 2.0 + 1.0 / (1.0 + np.exp(-z))
    out[rest] = _minmax(fused)[rest]
    return out


def _demo_head(tmp_path) -> LinearHead:
    registry = FileRegistry(tmp_path / "reg")
    folder = tmp_path / DEMO_MANIFEST["version_id"]
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"weights")
    published = registry.publish(folder, {k: v for k, v in DEMO_MANIFEST.items()
                                          if k not in ("files", "created_at", "extra")})
    path = registry.root / "versions" / published.version_id / "manifest.json"
    path.write_text(json.dumps({**DEMO_MANIFEST, "files": published.files}))
    return registry.manifest(published.version_id).head


def _served_list(rng: np.random.Generator, n: int) -> tuple[list[tuple[float, int, int, float]], list[Candidate]]:
    """A fused list as the retriever sends it: some documents from one leg only, ties in the fused scores."""
    lexical_ranks = rng.permutation(n) + 1
    vector_ranks = rng.permutation(n) + 1
    lexical_ranks[rng.random(n) < 0.3] = 0
    vector_ranks[(rng.random(n) < 0.3) & (lexical_ranks > 0)] = 0
    lexical_scores = np.round(rng.uniform(0, 30, n), 2).astype(np.float32)
    vector_scores = rng.uniform(-0.2, 1, n).astype(np.float32)
    fused = np.sort(np.round(rng.uniform(0, 0.04, n), 3).astype(np.float32))[::-1]
    rows, candidates = [], []
    for i in range(n):
        # What crosses the wire (LegScores floats) is what both sides read.
        lex_score, vec_score, fused_score = float(lexical_scores[i]), float(vector_scores[i]), float(fused[i])
        rows.append((lex_score if lexical_ranks[i] else 0.0, int(lexical_ranks[i]), int(vector_ranks[i]), fused_score))
        legs = {}
        if lexical_ranks[i]:
            legs["lexical"] = LegHit(int(lexical_ranks[i]), lex_score)
        if vector_ranks[i]:
            legs["vector"] = LegHit(int(vector_ranks[i]), vec_score)
        candidates.append(Candidate(f"d{i}", fused_score, i + 1, legs))
    return rows, candidates


@pytest.mark.parametrize("seed", range(12))
def test_an_existing_versions_linear_head_scores_identically(tmp_path, seed):
    head = _demo_head(tmp_path)
    assert isinstance(head, LinearHead) and head.coef == DEMO_HEAD["coef"]
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    rows, candidates = _served_list(rng, n)
    model = rng.normal(0.3, 0.2, n).astype(np.float32)
    np.testing.assert_array_equal(final_scores(head, model, candidates), _two_leg_linear(model, rows, head))


def test_a_head_keeps_the_legs_it_was_fitted_on_when_a_leg_is_added(monkeypatch):
    two = LinearHead(depth=3, coef=[0.5] * 7, intercept=0.1, mean=[0.0] * 7, scale=[1.0] * 7)
    assert head_legs(two) == ("lexical", "vector") == LEGS
    monkeypatch.setattr(combine, "LEGS", (*LEGS, "splade"))
    three = LinearHead(depth=3, coef=[0.5] * 10, intercept=0.1, mean=[0.0] * 10, scale=[1.0] * 10)
    assert head_legs(two) == ("lexical", "vector") and head_legs(three) == ("lexical", "vector", "splade")
    candidates = [Candidate("a", 0.03, 1, {"lexical": LegHit(1, 9.0), "splade": LegHit(2, 4.0)}),
                  Candidate("b", 0.02, 2, {"vector": LegHit(1, 0.8), "splade": LegHit(1, 5.0)})]
    model = np.array([0.1, 0.9], np.float32)
    rows = [(9.0, 1, 0, 0.03), (0.0, 0, 1, 0.02)]
    np.testing.assert_array_equal(final_scores(two, model, candidates), _two_leg_linear(model, rows, two))
    assert combine.leg_features(model.astype(np.float64), candidates, head_legs(three)).shape == (2, 10)
    assert leg_feature_names(("lexical", "vector", "splade"))[6:9] == ("splade_score", "splade_score_minmax",
                                                                        "splade_rr")


def test_a_head_that_fits_no_legs_is_refused():
    with pytest.raises(ValueError, match="coefficients"):
        head_legs(LinearHead(depth=3, coef=[0.5] * 6, intercept=0.0, mean=[0.0] * 6, scale=[1.0] * 6))
