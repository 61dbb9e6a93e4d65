"""Choosing a version's head on dev feedback: the blend, or a linear model over LegScores.

Both are served by services/reranker/combine.py; here they are fitted. Each dev query is a `Pool`: the
fused list the retriever would send (through the version's own query tower) and the model's score of
its top `window`. The blend's (depth, weight) comes from a grid; the linear head is a class-balanced
logistic regression over combine.leg_features of the fused top `linear_depth`, z-scored. Which one
is served is decided by k-fold cross-validation over the dev queries, then the winner is refitted on
all of them (bench/learning.md rows 8 and 9: the blend wins with clean clicks, the linear head with
noisy ones).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression

from services.common.config import TrainingSettings
from services.common.legs import Candidate
from services.engine.manifest import Blend, Head, LinearHead
from services.ir import metrics as ir
from services.reranker.combine import final_scores, fused_signal, leg_features


@dataclass(frozen=True)
class Pool:
    """One query's candidates: `ids` best first (fused), with the candidates and model scores of the first `window`."""

    ids: list[str]
    head: list[Candidate]  # the first `window` candidates (their legs and fused scores)
    scores: np.ndarray

    @property
    def window(self) -> int:
        return len(self.scores)

    def order(self, head: Head | None) -> list[str]:
        """The served order under a head (None: the model's own order); the tail keeps the fused order."""
        final = final_scores(head, self.scores, self.head)
        return [self.ids[i] for i in np.argsort(-final, kind="stable")] + self.ids[self.window:]


def ndcg(pools: dict[str, Pool], qrels: dict[str, dict[str, int]], head: Head | None) -> float:
    run = {}
    for qid, pool in pools.items():
        order = pool.order(head)
        run[qid] = {d: float(len(order) - i) for i, d in enumerate(order)}
    return ir.evaluate(run, {q: qrels[q] for q in pools}, ("ndcg@10",))["ndcg@10"]


def choose_blend(pools: dict[str, Pool], qrels, training: TrainingSettings) -> tuple[Blend, float]:
    """Grid over (depth, weight); ties keep the earlier depth and the smaller weight; weight 0 is the fused order."""
    window = training.eval_rerank_depth
    depths = sorted({min(d, window) for d in training.adapter.blend_depths})
    weights = sorted(set(training.adapter.blend_weights) | {0.0})
    best = (Blend(weight=0.0, depth=depths[0]), ndcg(pools, qrels, Blend(weight=0.0, depth=depths[0])))
    for depth in depths:
        for weight in weights:
            value = ndcg(pools, qrels, Blend(weight=weight, depth=depth))
            if value > best[1] + 1e-9:
                best = (Blend(weight=weight, depth=depth), value)
    return best


def fit_linear(pools: dict[str, Pool], qrels, training: TrainingSettings) -> LinearHead | None:
    """A linear head fitted on the pools' clicked (1) and unclicked (0) candidates; None with one class only."""
    depth = min(training.adapter.linear_head_depth, training.eval_rerank_depth)
    rows, labels = [], []
    for qid, pool in pools.items():
        fused = fused_signal([c.score for c in pool.head], pool.window)
        top = np.argsort(-fused, kind="stable")[:depth]
        rows.append(leg_features(pool.scores[top], [pool.head[i] for i in top]))
        relevant = qrels.get(qid, {})
        labels += [int(relevant.get(pool.ids[i], 0) > 0) for i in top]
    y = np.asarray(labels)
    if len(np.unique(y)) < 2:
        return None
    X = np.concatenate(rows)
    mean, scale = X.mean(0), X.std(0) + 1e-9
    model = LogisticRegression(C=training.adapter.linear_head_c, max_iter=2000, class_weight="balanced")
    model.fit((X - mean) / scale, y)
    return LinearHead(depth=depth, coef=model.coef_[0].tolist(), intercept=float(model.intercept_[0]),
                      mean=mean.tolist(), scale=scale.tolist())


def choose_head(pools: dict[str, Pool], qrels, training: TrainingSettings) -> tuple[Head, dict[str, float]]:
    """(the head the version's manifest records, numbers): blend vs linear by k-fold CV, the winner refitted on all.

    numbers: cv_blend_ndcg@10, cv_linear_ndcg@10 (-1 when a fold had one class only), head_ndcg@10 (the
    refitted head on all pools: what the runs list shows).
    """
    qids = sorted(pools)
    folds = min(training.adapter.head_cv_folds, len(qids))
    cv = {"blend": 0.0, "linear": 0.0}
    if folds >= 2:
        shuffled = qids[:]
        random.Random(f"head-cv:{training.seed}").shuffle(shuffled)
        parts = [shuffled[k::folds] for k in range(folds)]
        for k, held in enumerate(parts):
            fit_on = {q: pools[q] for j, part in enumerate(parts) if j != k for q in part}
            held_pools = {q: pools[q] for q in held}
            blend_head, _ = choose_blend(fit_on, qrels, training)
            cv["blend"] += ndcg(held_pools, qrels, blend_head) * len(held) / len(qids)
            linear_head = fit_linear(fit_on, qrels, training)
            if linear_head is None or cv["linear"] < 0:
                cv["linear"] = -1.0  # a fold with one class only: the linear head is not an option
                continue
            cv["linear"] += ndcg(held_pools, qrels, linear_head) * len(held) / len(qids)
    head = fit_linear(pools, qrels, training) if cv["linear"] > cv["blend"] else None
    if head is None:
        head, _ = choose_blend(pools, qrels, training)
    numbers = {"cv_blend_ndcg@10": cv["blend"], "cv_linear_ndcg@10": cv["linear"],
               "head_ndcg@10": ndcg(pools, qrels, head)}
    return head, numbers
