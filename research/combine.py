"""Lever 2: a learned combination of the legs' scores and ranks over the fused top-D candidates.

Features per (query, candidate): BM25 score (raw and min-max within the candidates), BM25 reciprocal rank,
base dense cosine (raw, min-max), its reciprocal rank, fused RRF score, and the same three for the tuned
query tower's cosine. Model: logistic regression on pointwise labels (z-scored features), fitted on the dev
queries' feedback (the train queries' tuned cosines are fitted to those very queries, so they would teach the
combiner to trust the tuned cosine too much). Reported: 5-fold CV on dev vs the simple blend, and test.
The served version of this idea (features from LegScores only) is recipe.leg_features / select_head.

  python -m research.combine --W research/cache/scifact/<recipe tag>_W.npy [--noise 0.3]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from research.common import CACHE, dev_split, load_corpus, ndcg_at_10, run_from_scores, topk
from research.recipe import (
    blend_rerank,
    evaluate,
    feedback_pairs,
    legs,
    minmax_rows,
    pairs_as_qrels,
    select_blend,
)
from services.engine.pooling import adapt_queries


def rank_rr(x: np.ndarray) -> np.ndarray:
    """1/(60+rank) of each entry within its row (rank 1 = best)."""
    r = np.argsort(np.argsort(-x, axis=1), axis=1) + 1
    return 1.0 / (60 + r)


def features(bm, dn, fused, cos, depth: int):
    """(top indices, feature tensor rows x depth x F)."""
    top = topk(fused, depth)
    row = np.arange(fused.shape[0])[:, None]
    cols = []
    for m in (bm, dn, cos):
        v = m[row, top]
        full_rr = rank_rr(m)[row, top]
        cols += [v, minmax_rows(v), full_rr]
    cols.append(fused[row, top])
    return top, np.stack(cols, axis=-1)


def combine_scores(model, mu, sd, fused, top, feats):
    out = fused.copy()
    row = np.arange(fused.shape[0])[:, None]
    f = (feats - mu) / sd
    z = model.decision_function(f.reshape(-1, f.shape[-1])).reshape(top.shape)
    out[row, top] = 2.0 + 1.0 / (1.0 + np.exp(-z))  # above the fused tail (< 1)
    return out


def main(argv=None):
    from sklearn.linear_model import LogisticRegression

    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default="scifact")
    ap.add_argument("--W", required=True, help="adapter saved by recipe.py")
    ap.add_argument("--noise", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--depth", type=int, default=30)
    ap.add_argument("--C", type=float, default=1.0)
    a = ap.parse_args(argv)
    c = load_corpus(a.corpus)
    bm, de, qe, fused = legs(c)
    dn = qe @ de.T
    cos = adapt_queries(qe, np.load(a.W)) @ de.T
    qi = c.qindex()
    _, dv = dev_split(list(c.qrels["train"]))
    dev_pairs = feedback_pairs(c, dv, c.qrels["train"], noise=a.noise, fused=fused, seed=a.seed + 1)
    dev_q = [c.query_ids[r] for r, _ in dev_pairs]
    c.qrels["dev_fb"] = pairs_as_qrels(c, dev_pairs)
    top, F = features(bm, dn, fused, cos, a.depth)
    labels = np.zeros(top.shape, dtype=int)
    for r, pos in dev_pairs:
        labels[r] = np.isin(top[r], pos)

    def fit(rows):
        X = F[rows].reshape(-1, F.shape[-1])
        mu, sd = X.mean(0), X.std(0) + 1e-9
        m = LogisticRegression(C=a.C, max_iter=2000, class_weight="balanced").fit((X - mu) / sd, labels[rows].ravel())
        return m, mu, sd

    rows = np.array([qi[q] for q in dev_q])
    rng = np.random.default_rng(0)
    folds = np.array_split(rng.permutation(len(rows)), 5)
    cv_lr, cv_blend = [], []
    for k in range(5):
        te = rows[folds[k]]
        trn = rows[np.concatenate([folds[j] for j in range(5) if j != k])]
        m, mu, sd = fit(trn)
        s = combine_scores(m, mu, sd, fused[te], top[te], F[te])
        qte = [c.query_ids[r] for r in te]
        rel = {q: c.qrels["dev_fb"][q] for q in qte}
        cv_lr.append(ndcg_at_10(run_from_scores(c, qte, s), rel) * len(te))
        qtr = [c.query_ids[r] for r in trn]
        d, w, _ = select_blend(c, fused[trn], cos[trn], qtr, {q: c.qrels["dev_fb"][q] for q in qtr})
        cv_blend.append(ndcg_at_10(run_from_scores(c, qte, blend_rerank(fused[te], cos[te], d, w)), rel) * len(te))
    m, mu, sd = fit(rows)
    bd, bw, _ = select_blend(c, fused[rows], cos[rows], dev_q, c.qrels["dev_fb"])
    res = {
        "W": a.W, "noise": a.noise, "depth": a.depth,
        "dev_cv_lr": sum(cv_lr) / len(rows), "dev_cv_blend": sum(cv_blend) / len(rows),
        "test_lr": evaluate(c, combine_scores(m, mu, sd, fused, top, F), c.qrels["test"]),
        "test_fused_candidates": evaluate(c, fused, c.qrels["test"]),
        "blend": [bd, bw], "test_blend": evaluate(c, blend_rerank(fused, cos, bd, bw), c.qrels["test"]),
        "coef": dict(zip(["bm", "bm_mm", "bm_rr", "dn", "dn_mm", "dn_rr", "cos", "cos_mm", "cos_rr", "rrf"],
                         np.round(m.coef_[0], 3).tolist())),
    }
    print(json.dumps(res, indent=1))
    (CACHE / a.corpus / f"combine_{Path(a.W).stem}_d{a.depth}.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
