"""Retriever benchmark on SciFact with the embedded backends (tantivy + qdrant-edge).

1. Search latency without rerank, over SciFact's 300 test queries one at a time: p50/p99 of the
   core called in-process (with each leg's share), and of `Search` through the real gRPC server
   (`python -m services.retriever` in its own process, client on loopback).
2. BM25 throughput: tantivy (this project's lexical leg) against `bm25s` on the same corpus and
   the same queries (all 1,109), top 100, one thread each, query analysis included, in this run.
   nDCG@10 on the test split is reported beside each so the speed is compared at equal quality.

Needs the corpus ingested first (`feedrank ingest --corpus-id scifact --dataset .../scifact`).
Writes bench/results/retriever.json. Timings share the machine's cores with whatever else runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.machine import describe as describe_machine  # noqa: E402
from services.common.config import EndpointSettings, get_settings  # noqa: E402
from services.ir import beir, metrics  # noqa: E402
from services.proto.feedrank.v1 import retriever_pb2, retriever_pb2_grpc  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def summary(ms: list[float]) -> dict:
    return {
        "n": len(ms), "p50_ms": round(percentile(ms, 0.5), 3), "p99_ms": round(percentile(ms, 0.99), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


async def in_process_latency(settings, corpus_id: str, queries: list[str], warmup: int) -> dict:
    from services.retriever.domain import SearchQuery
    from services.retriever.core import RetrieverCore

    core = RetrieverCore(settings)
    try:
        for q in queries[:warmup]:
            await core.search(SearchQuery(corpus_id, q, rerank_mode="none"))
        total, lexical, vector = [], [], []
        for q in queries:
            started = time.perf_counter()
            outcome = await core.search(SearchQuery(corpus_id, q, rerank_mode="none"))
            total.append((time.perf_counter() - started) * 1000)
            lexical.append(outcome.leg_ms["lexical"])
            vector.append(outcome.leg_ms["vector"])
    finally:
        await core.aclose()
    return {
        "in_process_search": summary(total),
        "lexical_leg": summary(lexical),
        "vector_leg_incl_query_embedding": summary(vector),
    }


def grpc_latency(settings, corpus_id: str, queries: list[str], warmup: int) -> dict:
    """Against `python -m services.retriever` in its own process, one call at a time."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    port = free_port()
    env = {
        **os.environ,
        "FEEDRANK_DATA_DIR": str(settings.data_path),
        "FEEDRANK_ENDPOINTS__METRICS_PORT_OFFSET": "0",
        "FEEDRANK_RETRIEVAL__IMPRESSION_SAMPLE_RATE": "0",
        "FEEDRANK_LOG_LEVEL": "WARNING",
    }
    server = subprocess.Popen([sys.executable, "-m", "services.retriever", "--port", str(port)], cwd=REPO, env=env)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + 120
            while True:
                try:
                    if health.Check(health_pb2.HealthCheckRequest(), timeout=2).status == 1:
                        break
                except grpc.RpcError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    sys.exit("the retriever server did not start")
                time.sleep(0.3)
            stub = retriever_pb2_grpc.RetrieverStub(channel)

            def call(q: str) -> None:
                stub.Search(retriever_pb2.SearchRequest(corpus_id=corpus_id, query=q, rerank_mode="none"), timeout=30)

            for q in queries[:warmup]:
                call(q)
            ms = []
            for q in queries:
                started = time.perf_counter()
                call(q)
                ms.append((time.perf_counter() - started) * 1000)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    return {"grpc_search": summary(ms)}


def bm25_throughput(settings, corpus_id: str, dataset: Path, queries: dict[str, str], qrels) -> dict:
    import bm25s
    import Stemmer

    from services.retriever.backends import Corpora

    qids = sorted(queries)
    texts = [queries[q] for q in qids]
    corpora = Corpora(settings.retrieval, settings.data_path)
    lexical = corpora.get(corpus_id).lexical
    started = time.perf_counter()
    tantivy_run = {qid: dict(lexical.search(text, 100)) for qid, text in zip(qids, texts)}
    tantivy_s = time.perf_counter() - started
    corpora.close()

    docs = list(beir.iter_corpus(dataset))
    stemmer = Stemmer.Stemmer("english")
    # Same BM25 constants as tantivy (k1=1.2, b=0.75) so only the engines differ.
    index_started = time.perf_counter()
    retriever = bm25s.BM25(k1=1.2, b=0.75, method="lucene")
    retriever.index(
        bm25s.tokenize([f"{d.title}\n{d.text}" for d in docs], stopwords="en", stemmer=stemmer, show_progress=False),
        show_progress=False,
    )
    bm25s_index_s = time.perf_counter() - index_started
    started = time.perf_counter()
    tokens = bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False)
    results, scores = retriever.retrieve(tokens, k=100, show_progress=False, n_threads=1)
    bm25s_s = time.perf_counter() - started
    bm25s_run = {
        qid: {docs[i].id: float(s) for i, s in zip(row, srow)} for qid, row, srow in zip(qids, results, scores)
    }
    judged = {q: r for q, r in qrels.items()}
    return {
        "queries": len(qids),
        "k": 100,
        "tantivy": {
            "queries_per_s": round(len(qids) / tantivy_s, 1),
            "ndcg@10_test": round(metrics.evaluate(tantivy_run, judged, ["ndcg@10"])["ndcg@10"], 4),
            "note": "one query at a time through the retriever's LexicalIndex (analysis + search + id lookup)",
        },
        "bm25s": {
            "queries_per_s": round(len(qids) / bm25s_s, 1),
            "ndcg@10_test": round(metrics.evaluate(bm25s_run, judged, ["ndcg@10"])["ndcg@10"], 4),
            "index_s": round(bm25s_index_s, 2),
            "note": "one batched retrieve call (tokenize + retrieve), n_threads=1, k1=1.2 b=0.75 lucene",
        },
    }


def ingest_embedding(dataset: Path, precisions: list[str], limit: int) -> dict:
    """Documents/s of the ingest embedder per document precision, and the dense leg's nDCG@10 with each.

    Embeds the corpus as ingest does (windows sorted by token count, batches cut by a padded-token
    budget) without the indexes, so it measures the engine alone; queries use the served query graph.
    """
    import numpy as np

    from services.engine.cpus import usable_cores
    from services.retriever.corpus import batched
    from services.retriever.embedder import Embedder
    from services.retriever.ingest import embed_text

    settings = get_settings()
    r = settings.retrieval
    docs = list(beir.iter_corpus(dataset))[: limit or None]
    queries = beir.load_queries(dataset)
    qrels = beir.load_qrels(dataset, "test")
    qids = sorted(q for q in qrels if q in queries)
    engine = settings.engine.model_copy(update={"intra_op_threads": r.ingest_threads or usable_cores()})
    out: dict = {"documents": len(docs), "window": r.ingest_window_docs, "batch_size": r.embed_batch_size,
                 "max_batch_tokens": settings.engine.max_batch_tokens, "query_precision": r.query_precision}
    for precision in precisions:
        embedder = Embedder.from_data_dir(settings.data_path, engine, r.embedder_max_length, r.embed_batch_size,
                                          r.query_precision, precision)
        embedder.encode([embed_text(d) for d in docs[:64]])  # warm the shapes
        started = time.perf_counter()
        vectors = np.concatenate([embedder.encode([embed_text(d) for d in window])
                                  for window in batched(docs, r.ingest_window_docs)])
        seconds = time.perf_counter() - started
        q = np.stack([embedder.encode_query(queries[qid]) for qid in qids])
        scores = q @ vectors.T
        top = np.argsort(-scores, axis=1)[:, :100]
        run = {qid: {docs[j].id: float(scores[i, j]) for j in top[i]} for i, qid in enumerate(qids)}
        out[precision] = {
            "docs_per_s": len(docs) / seconds, "seconds": seconds,
            "dense": metrics.evaluate(run, {q: qrels[q] for q in qids}, ["ndcg@10", "recall@100"]),
        }
    if "fp32" in out and "int8" in out:
        out["int8_speedup"] = out["int8"]["docs_per_s"] / out["fp32"]["docs_per_s"]
        out["int8_ndcg10_loss"] = out["fp32"]["dense"]["ndcg@10"] - out["int8"]["dense"]["ndcg@10"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus-id", default="scifact")
    parser.add_argument("--dataset", default=str(REPO / ".." / "shared" / "data" / "scifact"))
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "retriever.json"))
    parser.add_argument("--ingest-only", action="store_true",
                        help="measure the ingest embedder (docs/s, dense nDCG@10 per document precision) and stop")
    parser.add_argument("--doc-precisions", default="fp32,int8")
    parser.add_argument("--ingest-limit", type=int, default=0, help="embed only the first N documents (0 = all)")
    parser.add_argument("--ingest-out", default=str(REPO / "bench" / "results" / "ingest.json"))
    args = parser.parse_args()
    if args.ingest_only:
        result = {"benchmark": "ingest", "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "machine": describe_machine(),
                  **ingest_embedding(Path(args.dataset), args.doc_precisions.split(","), args.ingest_limit)}
        Path(args.ingest_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.ingest_out).write_text(json.dumps(result, indent=2))
        print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))
        return

    base = get_settings()
    # Impressions off and no reranker: this measures retrieval alone.
    settings = base.replace(
        endpoints=EndpointSettings(**{**base.endpoints.model_dump(), "metrics_port_offset": 0}),
        retrieval=base.retrieval.model_copy(update={"impression_sample_rate": 0.0}),
    )
    if settings.retrieval.lexical_backend != "tantivy" or settings.retrieval.vector_backend != "edge":
        sys.exit("bench/retriever.py measures the embedded backends: unset FEEDRANK_RETRIEVAL__*_BACKEND")
    corpus_root = settings.data_path / "corpora" / args.corpus_id
    if not (corpus_root / "docs.sqlite").is_file():
        sys.exit(
            f"no corpus {args.corpus_id!r} in {settings.data_path}: run "
            f"`feedrank ingest --corpus-id {args.corpus_id} --dataset {args.dataset}` first"
        )
    dataset = Path(args.dataset)
    queries = beir.load_queries(dataset)
    qrels = beir.load_qrels(dataset, "test")
    test_queries = [queries[q] for q in sorted(qrels)]

    results = {
        "benchmark": "retriever",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": describe_machine(),
        "corpus": {"id": args.corpus_id, "documents": sum(1 for _ in beir.iter_corpus(dataset))},
        "query_precision": settings.retrieval.query_precision,
        "latency_without_rerank": {
            **asyncio.run(in_process_latency(settings, args.corpus_id, test_queries, args.warmup)),
            **grpc_latency(settings, args.corpus_id, test_queries, args.warmup),
        },
        "bm25": bm25_throughput(settings, args.corpus_id, dataset, queries, qrels),
    }
    results["machine"]["load_avg_1m_end"] = os.getloadavg()[0]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
