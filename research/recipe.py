"""The learning recipe: a linear query adapter trained on feedback against the frozen corpus vectors,
then a blend of the fused score and the adapted cosine over the fused candidates.

    q' = normalize(q + q W)          q: the base all-MiniLM-L6-v2 query embedding, W: 384 x 384, starts at 0
    score(q, d) = q' . d             d: the corpus vectors the dense leg already holds (unchanged)
    final = (1 - w) * minmax(fused) + w * minmax(score)   over the fused top `depth`; below it the fused order

Why this shape (numbers in bench/learning.md):
- Training needs only the base embeddings of the feedback queries and the corpus vectors that already exist,
  so a whole training run is ~100 full-batch steps of a 384x384 matrix against a softmax over EVERY document
  (each document a negative): about a minute on a loaded 2-core CPU. Fine-tuning the transformer costs
  ~10 s per 32-query step on the same machine, and the full bi-encoder fine-tune (0.735 in the notes) 22+ min.
- No re-indexing: q W only changes the query side, and q^T (I + W) d is a full bilinear form, so nothing is
  lost by leaving the documents alone.
- Served as a bi-encoder (base transformer + Dense(I + W^T) + Normalize; export_model writes one), scoring a
  query costs one short transformer pass plus dot products with the candidates' stored vectors.
- The blend keeps the fused order's lexical signal; depth and weight are chosen on a dev split carved from the
  feedback queries, and weight 0 (the fused order itself) is always a candidate, which is the gate.

Entry points for the trainer:
  feedback_pairs(...)    simulated clicks from qrels (optionally corrupted)
  train_adapter(...)     -> W (numpy, 384 x 384) and the training history
  adapt_queries(...)     adapted, normalized query embeddings (services/engine/pooling.py)
  select_blend(...)      -> (depth, weight, dev nDCG@10)
  blend_rerank(...)      final score matrix
  export_model(...)      a SentenceTransformer directory (base + Dense + Normalize) for ONNX export
  run_recipe(...)        all of the above for one corpus and one set of feedback queries

CLI:
  python -m research.recipe --corpus scifact [--noise 0.3]
  python -m research.recipe --corpus msmarco_dl19_subset5k --cv 2     # no train split: 2-fold over its queries
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import dataclass

import numpy as np

from research.common import (
    CACHE,
    Corpus,
    base_model_dir,
    bm25_matrix,
    cached_embeddings,
    dev_split,
    load_corpus,
    ndcg_at_10,
    rrf,
    run_from_scores,
    topk,
)
from research.pseudo import cached_pseudo
from services.engine.pooling import adapt_queries

DEPTHS = (20, 30, 50, 100)
HEAD_DEPTH = 30  # candidates the linear head scores (the blend head picks its own depth from DEPTHS)
WEIGHTS = tuple(float(w) for w in np.round(np.arange(0, 1.01, 0.1), 2))


# ---------------------------------------------------------------- feedback

def feedback_pairs(c: Corpus, qids: list[str], qrels: dict[str, dict[str, int]], noise: float = 0.0,
                   fused: np.ndarray | None = None, seed: int = 0, min_grade: int = 1) -> list[tuple[int, list[int]]]:
    """(query row, clicked doc rows) per query, simulated from qrels (grade >= min_grade = a click).

    With noise > 0, that fraction of the judgements is corrupted: the clicked document is replaced by a random
    non-relevant document from the query's fused top 10 (a click on a wrong result that was shown).
    """
    rng = random.Random(seed)
    qi, di = c.qindex(), {d: j for j, d in enumerate(c.doc_ids)}
    out = []
    for q in qids:
        rel = qrels.get(q, {})
        row = qi[q]
        shown = [int(j) for j in topk(fused[row:row + 1], 10)[0]] if fused is not None else []
        wrong = [j for j in shown if rel.get(c.doc_ids[j], 0) < min_grade]
        pos = []
        for d, g in rel.items():
            if g < min_grade or d not in di:
                continue
            pos.append(rng.choice(wrong) if noise > 0 and wrong and rng.random() < noise else di[d])
        if pos:
            out.append((row, sorted(set(pos))))
    return out


def pairs_as_qrels(c: Corpus, pairs) -> dict[str, dict[str, int]]:
    return {c.query_ids[r]: {c.doc_ids[j]: 1 for j in pos} for r, pos in pairs}


# ---------------------------------------------------------------- training

def train_adapter(query_emb: np.ndarray, pairs: list[tuple[int, list[int]]], doc_emb: np.ndarray, *,
                  epochs: int = 100, lr: float = 1e-3, weight_decay: float = 0.01, scale: float = 20.0,
                  eval_every: int = 10, dev_eval=None, log=print) -> tuple[np.ndarray, list[dict]]:
    """Full-batch Adam on W with a softmax over the whole corpus (multi-positive: -log sum of positives' p).

    dev_eval(W) -> float, if given, is called every `eval_every` epochs and the best W is kept (W = 0, the
    base model, included), which is early stopping on the dev feedback.
    """
    import torch

    torch.manual_seed(0)
    D = torch.from_numpy(np.ascontiguousarray(doc_emb))
    Q = torch.from_numpy(np.ascontiguousarray(query_emb[[r for r, _ in pairs]]))
    mask = torch.zeros(len(pairs), D.shape[0], dtype=torch.bool)
    for i, (_, pos) in enumerate(pairs):
        mask[i, pos] = True
    W = torch.zeros(D.shape[1], D.shape[1], requires_grad=True)
    opt = torch.optim.Adam([W], lr=lr, weight_decay=weight_decay)
    best_W, best, history = np.zeros((D.shape[1], D.shape[1]), np.float32), -1.0, []
    if dev_eval is not None:
        best = dev_eval(best_W)
        history.append({"epoch": 0, "dev": round(best, 4)})
    t0 = time.time()
    for ep in range(1, epochs + 1):
        q = torch.nn.functional.normalize(Q + Q @ W, dim=-1)
        logits = scale * q @ D.T
        loss = (torch.logsumexp(logits, 1) - torch.logsumexp(logits.masked_fill(~mask, -1e4), 1)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if ep % eval_every == 0 or ep == epochs:
            entry = {"epoch": ep, "loss": round(loss.item(), 4), "secs": round(time.time() - t0, 1)}
            cur = W.detach().numpy().copy()
            if dev_eval is not None:
                entry["dev"] = round(dev_eval(cur), 4)
                if entry["dev"] > best:
                    best, best_W = entry["dev"], cur
            else:
                best_W = cur
            history.append(entry)
            log(json.dumps(entry))
    return best_W, history


# ---------------------------------------------------------------- re-scoring

def minmax_rows(x: np.ndarray) -> np.ndarray:
    lo, hi = x.min(axis=1, keepdims=True), x.max(axis=1, keepdims=True)
    return (x - lo) / np.maximum(hi - lo, 1e-9)


def blend_rerank(fused: np.ndarray, cos: np.ndarray, depth: int = 30, weight: float = 0.5) -> np.ndarray:
    """Re-score each row's fused top `depth` with (1-w)*minmax(fused) + w*minmax(cos); the rest keep fused order.

    Re-scored candidates get 2 + blend, so they stay above the tail, which keeps its fused score (< 1).
    """
    top = topk(fused, depth)
    row = np.arange(fused.shape[0])[:, None]
    out = fused.copy()
    out[row, top] = 2.0 + (1 - weight) * minmax_rows(fused[row, top]) + weight * minmax_rows(cos[row, top])
    return out


def select_blend(c: Corpus, fused: np.ndarray, cos: np.ndarray, qids: list[str], qrels,
                 depths=DEPTHS, weights=WEIGHTS) -> tuple[int, float, float]:
    """Grid-search (depth, weight) on dev queries (rows of fused/cos follow qids); ties keep the smaller weight."""
    best = (depths[0], 0.0, -1.0)
    for d in depths:
        for w in weights:
            v = ndcg_at_10(run_from_scores(c, qids, blend_rerank(fused, cos, d, w)), qrels)
            if v > best[2] + 1e-9:
                best = (d, float(w), v)
    return best


# ---------------------------------------------------------------- the served pipeline: legs + a head

def leg_features(lex: np.ndarray, vec: np.ndarray, depth: int = 30, leg_k: int = 100):
    """What the reranker receives in LegScores when the vector leg queries through the adapted encoder.

    lex / vec: full score matrices of the two legs (the retriever only ever exposes each leg's top leg_k).
    Returns (fused, top, feats): the RRF scores of the two top-leg_k lists, each row's fused top `depth`, and
    per candidate [lexical score, its min-max over the candidates, 1/(60 + lexical rank), the same three for the
    vector leg, fused score]; a leg that did not return the document contributes 0 (lexical_rank = 0 in the proto).
    """
    row = np.arange(lex.shape[0])[:, None]
    lists, per_leg = [], []
    for m in (lex, vec):
        t = topk(m, leg_k)
        lists.append(t)
        score, rr = np.zeros_like(m), np.zeros_like(m)
        score[row, t] = m[row, t]
        rr[row, t] = 1.0 / (60 + 1 + np.arange(leg_k))[None, :]
        per_leg.append((score, rr))
    fused = rrf(*lists, n_docs=lex.shape[1])
    top = topk(fused, depth)
    cols = []
    for score, rr in per_leg:
        v = score[row, top]
        cols += [v, minmax_rows(v), rr[row, top]]
    cols.append(fused[row, top])
    return fused, top, np.stack(cols, axis=-1).astype(np.float32)


FEATURES = ("lexical_score", "lexical_score_minmax", "lexical_rr", "vector_score", "vector_score_minmax",
            "vector_rr", "fused_score")


@dataclass
class Head:
    """How the reranker turns LegScores into the final order: kind "fused" (the gate kept the fused order),
    "blend" (weight, depth) or "linear" (logistic regression over z-scored FEATURES of the fused top `depth`)."""
    kind: str
    depth: int
    weight: float = 0.0
    coef: list | None = None
    intercept: float = 0.0
    mean: list | None = None
    scale: list | None = None

    def rerank(self, fused: np.ndarray, vec: np.ndarray, top: np.ndarray, feats: np.ndarray) -> np.ndarray:
        if self.kind == "fused":
            return fused.copy()
        if self.kind == "blend":
            return blend_rerank(fused, vec, self.depth, self.weight)
        row = np.arange(fused.shape[0])[:, None]
        top, feats = top[:, :self.depth], feats[:, :self.depth]
        z = ((feats - np.array(self.mean)) / np.array(self.scale)) @ np.array(self.coef) + self.intercept
        out = fused.copy()
        out[row, top] = 2.0 + 1.0 / (1.0 + np.exp(-z))  # above the fused tail (< 1)
        return out


def fit_linear_head(feats: np.ndarray, labels: np.ndarray, depth: int, C: float = 1.0) -> Head | None:
    """None when the labels hold one class only (every candidate clicked, or none): nothing to separate."""
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(labels)) < 2:
        return None
    X = feats.reshape(-1, feats.shape[-1]).astype(np.float64)
    mu, sd = X.mean(0), X.std(0) + 1e-9
    m = LogisticRegression(C=C, max_iter=2000, class_weight="balanced").fit((X - mu) / sd, labels.ravel())
    return Head("linear", depth, coef=m.coef_[0].tolist(), intercept=float(m.intercept_[0]), mean=mu.tolist(),
                scale=sd.tolist())


def select_head(c: Corpus, fused, vec, top, feats, qids: list[str], qrels, folds: int = 5, seed: int = 0) -> tuple:
    """Choose blend vs linear head by k-fold CV over the dev queries (rows of the arrays follow qids), then
    refit the winner on all of them. Returns (head, {"blend": cv nDCG, "linear": cv nDCG})."""
    di = {d: j for j, d in enumerate(c.doc_ids)}
    labels = np.zeros(top.shape, dtype=int)
    for i, q in enumerate(qids):
        labels[i] = np.isin(top[i], [di[d] for d, g in qrels[q].items() if g > 0])
    folds = min(folds, len(qids))
    order = np.random.default_rng(seed).permutation(len(qids))
    parts = np.array_split(order, folds)
    cv = {"blend": 0.0, "linear": 0.0}
    for k in range(folds):
        te, tr = parts[k], np.concatenate([parts[j] for j in range(folds) if j != k])
        q_te, q_tr = [qids[i] for i in te], [qids[i] for i in tr]
        rel_te = {q: qrels[q] for q in q_te}
        d, w, _ = select_blend(c, fused[tr], vec[tr], q_tr, qrels)
        heads = {"blend": Head("blend", d, w), "linear": fit_linear_head(feats[tr], labels[tr], top.shape[1])}
        for name, h in heads.items():
            if h is None:
                cv[name] = float("-inf")  # a fold with one class only: the linear head is not an option
                continue
            s = h.rerank(fused[te], vec[te], top[te], feats[te])
            cv[name] += ndcg_at_10(run_from_scores(c, q_te, s), rel_te) * len(te) / len(qids)
    if cv["linear"] > cv["blend"]:
        return fit_linear_head(feats, labels, top.shape[1]), cv  # 2 classes overall since every fold had them
    d, w, _ = select_blend(c, fused, vec, qids, qrels)
    return Head("blend", d, w), cv


# ---------------------------------------------------------------- serving artefact

def export_model(W: np.ndarray, out_dir: str, model_dir: str | None = None, max_seq_length: int = 256):
    """Base bi-encoder + Dense(I + W^T, no bias, identity) + Normalize, saved as a SentenceTransformer dir."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules.dense import Dense
    from sentence_transformers.base.modules.normalize import Normalize

    base = SentenceTransformer(model_dir or base_model_dir(), device="cpu")
    mods = [m for m in base if not isinstance(m, Normalize)]
    n = W.shape[0]
    dense = Dense(n, n, bias=False, activation_function=None,
                  init_weight=torch.from_numpy((np.eye(n, dtype=np.float32) + W).T.copy()))
    model = SentenceTransformer(modules=[*mods, dense, Normalize()], device="cpu")
    model.max_seq_length = max_seq_length
    model.save(out_dir)
    return model


# ---------------------------------------------------------------- one run

def legs(c: Corpus):
    bm = bm25_matrix(c)
    de, qe = cached_embeddings(c)
    fused = rrf(topk(bm), topk(qe @ de.T), n_docs=len(c.doc_ids))
    return bm, de, qe, fused


@dataclass
class RecipeResult:
    W: np.ndarray
    depth: int          # blend over the BASE fused list (vector leg unchanged, reranker needs doc vectors)
    weight: float
    dev_ndcg: float
    head: Head          # served pipeline: vector leg through the adapter, head over LegScores
    head_cv: dict
    history: list
    seconds: float

    def scores(self, fused: np.ndarray, query_emb: np.ndarray, doc_emb: np.ndarray) -> np.ndarray:
        return blend_rerank(fused, adapt_queries(query_emb, self.W) @ doc_emb.T, self.depth, self.weight)

    def served_scores(self, lex: np.ndarray, query_emb: np.ndarray, doc_emb: np.ndarray) -> np.ndarray:
        vec = adapt_queries(query_emb, self.W) @ doc_emb.T
        fused, top, feats = leg_features(lex, vec, HEAD_DEPTH)
        return self.head.rerank(fused, vec, top, feats)


def run_recipe(c: Corpus, qids: list[str], qrels, bm, de, qe, fused, *, noise: float = 0.0, seed: int = 0,
               dev_frac: float = 0.2, min_grade: int = 1, pseudo=None, pseudo_max: int = 1000,
               min_dev_queries: int = 30, log=print, **train_kw) -> RecipeResult:
    """Feedback from `qids` (carving a dev split from them), train W, choose the blend on dev.

    pseudo: optional (doc row per pseudo-query, pseudo-query embeddings); up to pseudo_max of them are added
    to the feedback as extra clicks (self-supervised pairs from the corpus).
    min_dev_queries: below this many dev queries the gate never promotes (measured: 4 dev queries let a
    pipeline through that lost 0.03 on held-out msmarco queries).
    """
    t0 = time.time()
    tr, dv = dev_split(list(qids), dev_frac, seed)
    pairs = feedback_pairs(c, tr, qrels, noise=noise, fused=fused, seed=seed, min_grade=min_grade)
    # Dev feedback is corrupted like train feedback: selection only ever sees what the product would see.
    dev_pairs = feedback_pairs(c, dv, qrels, noise=noise, fused=fused, seed=seed + 1, min_grade=min_grade)
    train_q = qe
    if pseudo is not None:
        p_docs, p_emb = pseudo
        pick = np.random.default_rng(seed).permutation(len(p_docs))[:pseudo_max]
        train_q = np.concatenate([qe, p_emb[pick]])
        pairs = pairs + [(len(qe) + i, [p_docs[k]]) for i, k in enumerate(pick)]
    dev_rel = pairs_as_qrels(c, dev_pairs)
    dev_q = list(dev_rel)
    dev_rows = [c.qindex()[q] for q in dev_q]

    def dev_eval(W):
        cos = adapt_queries(qe[dev_rows], W) @ de.T
        return ndcg_at_10(run_from_scores(c, dev_q, cos), dev_rel)

    log(f"{c.name}: {len(pairs)} feedback queries, {len(dev_q)} dev queries, noise {noise}")
    W, hist = train_adapter(train_q, pairs, de, dev_eval=dev_eval, log=log, **train_kw)
    cos = adapt_queries(qe[dev_rows], W) @ de.T
    depth, w, dev_v = select_blend(c, fused[dev_rows], cos, dev_q, dev_rel)
    log(f"blend chosen on dev: depth {depth} weight {w} dev nDCG@10 {dev_v:.4f}")
    fused_a, top, feats = leg_features(bm[dev_rows], cos, HEAD_DEPTH)
    head, cv = select_head(c, fused_a, cos, top, feats, dev_q, dev_rel, seed=seed)
    base_dev = ndcg_at_10(run_from_scores(c, dev_q, fused[dev_rows]), dev_rel)
    cv["fused"] = base_dev
    if max(cv["blend"], cv["linear"]) <= base_dev or len(dev_q) < min_dev_queries:
        # The gate: no learned pipeline beats the fused order on held-out dev feedback (or there is too little
        # dev feedback to tell), so serve the fused order.
        W, head = np.zeros_like(W), Head("fused", 0)
    log(f"served head: {head.kind} (dev CV {cv})")
    return RecipeResult(W, depth, w, dev_v, head, cv, hist, time.time() - t0)


def evaluate(c: Corpus, scores: np.ndarray, qrels, qids=None) -> float:
    qi = c.qindex()
    qids = list(qids or qrels)
    rel = {q: qrels[q] for q in qids}
    return ndcg_at_10(run_from_scores(c, qids, scores[[qi[q] for q in qids]]), rel)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default="scifact")
    ap.add_argument("--noise", type=float, default=0.0, help="fraction of corrupted clicks")
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--scale", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-grade", type=int, default=1, help="qrels grade that counts as a click")
    ap.add_argument("--pseudo", type=int, default=0, help="add this many self-supervised pseudo-query clicks")
    ap.add_argument("--feedback-frac", type=float, default=1.0,
                    help="use only this fraction of the train queries' feedback (learning curve)")
    ap.add_argument("--min-dev-queries", type=int, default=30, help="the gate needs this many dev queries")
    ap.add_argument("--cv", type=int, default=0, help="k-fold over the test queries (corpora without a train split)")
    ap.add_argument("--export", default=None, help="write the served bi-encoder here (train-split mode)")
    ap.add_argument("--tag", default=None)
    a = ap.parse_args(argv)
    import os

    import torch

    torch.set_num_threads(int(os.environ.get("LEARN_THREADS", "2")))
    tag = a.tag or f"adapter_{a.corpus}_n{a.noise}_e{a.epochs}_lr{a.lr}_wd{a.weight_decay}_s{a.seed}" + (
        f"_cv{a.cv}" if a.cv else "") + (f"_g{a.min_grade}" if a.min_grade != 1 else "") + (
        f"_p{a.pseudo}" if a.pseudo else "") + (f"_f{a.feedback_frac}" if a.feedback_frac < 1 else "")
    c = load_corpus(a.corpus)
    bm, de, qe, fused = legs(c)
    pseudo = None
    if a.pseudo:
        pseudo = cached_pseudo(c)
    kw = {"epochs": a.epochs, "lr": a.lr, "weight_decay": a.weight_decay, "scale": a.scale,
          "min_grade": a.min_grade, "pseudo": pseudo, "pseudo_max": a.pseudo, "min_dev_queries": a.min_dev_queries}
    test = c.qrels["test"]
    res = {"tag": tag, "args": vars(a), "test_fused": evaluate(c, fused, test)}
    if not a.cv:
        fb_q = sorted(c.qrels["train"])
        random.Random(a.seed).shuffle(fb_q)
        fb_q = fb_q[:max(1, round(len(fb_q) * a.feedback_frac))]
        r = run_recipe(c, fb_q, c.qrels["train"], bm, de, qe, fused, noise=a.noise, seed=a.seed, **kw)
        final = r.scores(fused, qe, de)
        cos = adapt_queries(qe, r.W) @ de.T
        seen = {d for q in c.qrels["train"].values() for d in q}
        unseen_q = [q for q, rel in test.items() if not (set(rel) & seen)]
        res |= {
            "minutes": round(r.seconds / 60, 2), "depth": r.depth, "weight": r.weight, "dev": r.dev_ndcg,
            "history": r.history,
            "test_adapted_dense": evaluate(c, cos, test),
            "test_rrf_bm25_adapted": evaluate(c, rrf(topk(bm), topk(cos), n_docs=len(c.doc_ids)), test),
            "test_recipe": evaluate(c, final, test),
            "served_head": r.head.kind, "served_head_cv": r.head_cv,
            "served_blend": [r.head.depth, r.head.weight] if r.head.kind == "blend" else None,
            "test_served": evaluate(c, r.served_scores(bm, qe, de), test),
            "unseen_test_served": evaluate(c, r.served_scores(bm, qe, de), test, unseen_q),
            "unseen_docs_queries": len(unseen_q),
            "unseen_test_fused": evaluate(c, fused, test, unseen_q),
            "unseen_test_recipe": evaluate(c, final, test, unseen_q),
        }
        np.save(CACHE / a.corpus / f"{tag}_W.npy", r.W)
        if a.export:
            export_model(r.W, a.export)
    else:
        # k-fold over the corpus's only judged queries: train on k-1 folds, score the held-out fold.
        qids = sorted(test, key=lambda s: (len(s), s))
        random.Random(a.seed).shuffle(qids)
        folds = [qids[i::a.cv] for i in range(a.cv)]
        final, dense_only, served = fused.copy(), fused.copy(), fused.copy()
        t0 = time.time()
        for k in range(a.cv):
            train_q = [q for j, f in enumerate(folds) if j != k for q in f]
            r = run_recipe(c, train_q, test, bm, de, qe, fused, noise=a.noise, seed=a.seed, **kw)
            rows = [c.qindex()[q] for q in folds[k]]
            final[rows] = r.scores(fused[rows], qe[rows], de)
            dense_only[rows] = adapt_queries(qe[rows], r.W) @ de.T
            served[rows] = r.served_scores(bm[rows], qe[rows], de)
            res[f"fold{k}"] = {"depth": r.depth, "weight": r.weight, "dev": r.dev_ndcg,
                               "test_fused": evaluate(c, fused, test, folds[k]),
                               "test_recipe": evaluate(c, final, test, folds[k]), "head": r.head.kind,
                               "head_cv": r.head_cv, "test_served": evaluate(c, served, test, folds[k])}
        res |= {"minutes": round((time.time() - t0) / 60, 2), "test_recipe": evaluate(c, final, test),
                "test_served": evaluate(c, served, test),
                "test_base_dense": evaluate(c, qe @ de.T, test), "test_adapted_dense": evaluate(c, dense_only, test)}
    print(json.dumps(res, indent=1), flush=True)
    (CACHE / a.corpus / f"{tag}.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
