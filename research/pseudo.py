"""Self-supervised pseudo-queries from the corpus itself (lever: bootstrap without feedback).

One pseudo-query per document: its title, or for untitled passages its first sentence. The pair
(pseudo-query, its document) is a click the corpus gives for free. Embeddings cached under cache/<corpus>/.

  python -m research.pseudo scifact msmarco_dl19_subset5k
"""

import json
import re
import sys
import time

import numpy as np
from research.common import CACHE, encode, load_corpus, load_st


def pseudo_queries(c) -> list[tuple[str, int]]:
    out = []
    for j, (title, body) in enumerate(zip(c.doc_titles, c.doc_bodies)):
        text = title or re.split(r"(?<=[.!?])\s+", body, maxsplit=1)[0]
        if 3 <= len(text.split()) <= 40:
            out.append((text, j))
    return out


def cached_pseudo(c) -> tuple[list[int], np.ndarray]:
    """(doc row per pseudo-query, base embeddings of the pseudo-queries)."""
    p_txt, p_emb = CACHE / c.name / "pseudo.json", CACHE / c.name / "pseudo_emb.npy"
    if p_txt.exists() and p_emb.exists():
        return [j for _, j in json.loads(p_txt.read_text())], np.load(p_emb)
    pq = pseudo_queries(c)
    t0 = time.time()
    emb = encode(load_st(max_seq_length=64), [t for t, _ in pq], batch_size=64)
    print(f"[{c.name}] encoded {len(pq)} pseudo-queries in {time.time() - t0:.0f}s", flush=True)
    p_txt.write_text(json.dumps(pq))
    np.save(p_emb, emb)
    return [j for _, j in pq], emb


if __name__ == "__main__":
    for name in sys.argv[1:]:
        cached_pseudo(load_corpus(name))
