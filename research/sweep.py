"""Adapter hyperparameter sweep on SciFact; choose by the dev column only (test printed for the record).

  python -m research.sweep
"""

import json

from research.common import dev_split, load_corpus, ndcg_at_10, run_from_scores
from research.recipe import (
    blend_rerank,
    evaluate,
    feedback_pairs,
    legs,
    pairs_as_qrels,
    select_blend,
    train_adapter,
)
from services.engine.pooling import adapt_queries


def main():
    c = load_corpus("scifact")
    bm, de, qe, fused = legs(c)
    tr, dv = dev_split(list(c.qrels["train"]))
    pairs = feedback_pairs(c, tr, c.qrels["train"], fused=fused)
    dev_rel = pairs_as_qrels(c, feedback_pairs(c, dv, c.qrels["train"], fused=fused, seed=1))
    dev_q = list(dev_rel)
    rows = [c.qindex()[q] for q in dev_q]

    def dev_eval(W):
        return ndcg_at_10(run_from_scores(c, dev_q, adapt_queries(qe[rows], W) @ de.T), dev_rel)

    for lr, wd, scale, epochs in [(1e-3, 0.0, 20, 100), (1e-3, 0.01, 20, 100), (3e-3, 0.0, 20, 100),
                                  (1e-3, 0.0, 40, 100), (3e-4, 0.01, 20, 200)]:
        W, hist = train_adapter(qe, pairs, de, epochs=epochs, lr=lr, weight_decay=wd, scale=scale,
                                dev_eval=dev_eval, log=lambda *_: None)
        cos = adapt_queries(qe, W) @ de.T
        d, w, v = select_blend(c, fused[rows], cos[rows], dev_q, dev_rel)
        best = max(hist, key=lambda h: h.get("dev", -1))
        print(json.dumps({"lr": lr, "wd": wd, "scale": scale, "epochs": epochs, "best_epoch": best["epoch"],
                          "dev_dense": best["dev"], "dev_blend": round(v, 4), "blend": [d, w],
                          "test_dense": round(evaluate(c, cos, c.qrels["test"]), 4),
                          "test_blend": round(evaluate(c, blend_rerank(fused, cos, d, w), c.qrels["test"]),
                                              4)}),
              flush=True)


if __name__ == "__main__":
    main()
