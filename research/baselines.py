"""Build the caches (BM25 matrix, base embeddings) and print the baseline rows (BM25, dense, RRF)."""
import sys
import time

from research.common import (
    bm25_matrix,
    cached_embeddings,
    load_corpus,
    ndcg_at_10,
    ranx_ndcg,
    rrf,
    run_from_scores,
    topk,
)


def main():
    for name in sys.argv[1:] or ["scifact", "msmarco_dl19_subset5k"]:
        t0 = time.time()
        c = load_corpus(name)
        bm = bm25_matrix(c)
        de, qe = cached_embeddings(c)
        dn = qe @ de.T
        fused = rrf(topk(bm), topk(dn), n_docs=len(c.doc_ids))
        qi = c.qindex()
        rel = c.qrels["test"]
        rows = [qi[q] for q in rel]
        # 1/(60 + rank) with 0-based ranks (LEARNING-NOTES' 0.718) is the same as k=59 with 1-based ranks.
        fused_0based = rrf(topk(bm), topk(dn), k=59, n_docs=len(c.doc_ids))
        for label, s in [("bm25", bm), ("dense", dn), ("rrf", fused), ("rrf 0-based ranks", fused_0based)]:
            run = run_from_scores(c, list(rel), s[rows])
            print(f"{name} {label}: ndcg@10 {ndcg_at_10(run, rel):.4f} (ranx {ranx_ndcg(run, rel):.4f})",
                  flush=True)
        print(f"{name} done in {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
