"""Control experiment: how much of the adapter's gain is a plain "clicked before" document prior?

Score = blend of the fused score and log(1 + clicks on the document in the train feedback), depth and weight
chosen on the same dev split as the recipe. No model at all: if this matches the adapter, the adapter mostly
learned which documents get clicked.

  python -m research.prior [--noise 0.3]
"""

import argparse
import json

import numpy as np
from research.common import dev_split, load_corpus
from research.recipe import blend_rerank, evaluate, feedback_pairs, legs, pairs_as_qrels, select_blend


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default="scifact")
    ap.add_argument("--noise", type=float, default=0.0)
    a = ap.parse_args()
    c = load_corpus(a.corpus)
    bm, de, qe, fused = legs(c)
    tr, dv = dev_split(list(c.qrels["train"]))
    pairs = feedback_pairs(c, tr, c.qrels["train"], noise=a.noise, fused=fused)
    dev_pairs = feedback_pairs(c, dv, c.qrels["train"], noise=a.noise, fused=fused, seed=1)
    clicks = np.zeros(len(c.doc_ids), np.float32)
    for _, pos in pairs:
        clicks[pos] += 1
    prior = np.broadcast_to(np.log1p(clicks), fused.shape)
    # A tiny tie-breaker from the fused score keeps min-max defined when no candidate was ever clicked.
    prior = prior + 1e-3 * fused
    dev_rel = pairs_as_qrels(c, dev_pairs)
    rows = [c.qindex()[q] for q in dev_rel]
    d, w, v = select_blend(c, fused[rows], prior[rows], list(dev_rel), dev_rel)
    test = c.qrels["test"]
    seen = {x for q in c.qrels["train"].values() for x in q}
    unseen = [q for q, r in test.items() if not (set(r) & seen)]
    final = blend_rerank(fused, prior, d, w)
    print(json.dumps({"noise": a.noise, "depth": d, "weight": w, "dev": round(v, 4),
                      "test_fused": round(evaluate(c, fused, test), 4),
                      "test_prior": round(evaluate(c, final, test), 4),
                      "unseen_test_prior": round(evaluate(c, final, test, unseen), 4)}))


if __name__ == "__main__":
    main()
