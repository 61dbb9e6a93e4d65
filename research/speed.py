"""Serving cost of the recipe on this CPU: one adapted query embedding + the head over 30-100 candidates,
and (for comparison) what a reranker would pay if it had to embed the candidate documents itself.
Also checks that export_model reproduces adapt_queries() exactly.

  python -m research.speed research/cache/scifact/<tag>_W.npy
"""

import statistics
import sys
import tempfile
import time

import numpy as np
from research.common import cached_embeddings, encode, load_corpus, load_st
from research.recipe import HEAD_DEPTH, export_model, leg_features
from services.engine.pooling import adapt_queries


def main():
    W = np.load(sys.argv[1])
    c = load_corpus("scifact")
    de, qe = cached_embeddings(c)
    with tempfile.TemporaryDirectory() as tmp:
        export_model(W, tmp)
        m = load_st(tmp, 256)
        got = encode(m, c.query_texts[:64])
        diff = float(np.abs(got - adapt_queries(qe[:64], W)).max())
        print("export_model max |diff| vs adapt_queries():", diff)
        lat = []
        for q in c.query_texts[100:150]:
            t = time.perf_counter()
            v = m.encode([q], normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
            lat.append(time.perf_counter() - t)
        print(f"adapted query embedding (torch, 1 query): p50 {1e3 * statistics.median(lat):.1f} ms")
    bm = np.load(CACHE / "scifact" / "bm25.npy")
    vec = adapt_queries(qe[:50], W) @ de.T
    t = time.perf_counter()
    leg_features(bm[:50], vec, HEAD_DEPTH)
    print(f"legs features + fusion for 50 queries over the full corpus (bench only; the service gets them): "
          f"{1e3 * (time.perf_counter() - t) / 50:.1f} ms/query")
    base = load_st(None, 256)
    top = np.argsort(-vec, axis=1)[:, :30]
    lat = []
    for i in range(5):
        docs = [c.doc_texts[j] for j in top[i]]
        t = time.perf_counter()
        encode(base, docs)
        lat.append(time.perf_counter() - t)
    print(f"embedding 30 candidate docs at 256 tokens (torch): p50 {1e3 * statistics.median(lat):.0f} ms")


if __name__ == "__main__":
    main()
