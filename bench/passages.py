"""Long documents: reranking with passages (MaxP and the other rules) against truncation, on SciFact.

Each test query's BM25 top --depth (bm25s, k1=1.2 b=0.75, as bench/retriever.py) is reranked by the
reranker's core in-process (its real batcher and cache code) with the documents as the retriever
sends them (title + abstract, cut to reranking.rerank_input_snippet_chars), under several
reranking.passage_* settings; truncation is passage_aggregate=first (the first window: the head).
Reports nDCG@10 per configuration, pairs scored (the batcher's count of forward-pass rows) and the
wall time against truncation, measured with the result cache and the document-vector cache off so
every pair is encoded, as a cross-encoder would be.

The model is the product's default served kind: the packaged all-MiniLM-L6-v2 exported as a
bi-encoder version (query tower 64 tokens, document tower 256), as the query-adapter recipe
(`feedrank model bootstrap`) publishes it, without a learned adapter (that needs a bootstrap run on
the corpus first). No pretrained cross-encoder is available offline. Writes bench/results/passages.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from prometheus_client import REGISTRY

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.machine import describe as describe_machine  # noqa: E402
from services.common.config import EngineSettings, RerankingSettings, Settings, validated  # noqa: E402
from services.ir import beir, metrics  # noqa: E402
from services.registry.importer import import_bi_encoder  # noqa: E402
from services.registry.store import FileRegistry  # noqa: E402
from services.reranker.batching import Batcher  # noqa: E402
from services.reranker.cache import ResultCache  # noqa: E402
from services.reranker.core import Document, RerankerCore, RerankQuery  # noqa: E402
from services.reranker.versions import VersionPool  # noqa: E402
from services.retriever.embedder import packaged_model_dir  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "scifact"
RESULTS = REPO / "bench" / "results"
QUERY_MAX_LENGTH, DOC_MAX_LENGTH = 64, 256  # the served version's towers (training / retrieval defaults)
PACKAGED = (f"packaged all-MiniLM-L6-v2 as a bi-encoder version (query {QUERY_MAX_LENGTH} / document {DOC_MAX_LENGTH} "
            "tokens): the kind and towers the query-adapter recipe serves, without a learned adapter")

# name -> reranking settings changed from the defaults. "truncation" is the baseline every ratio is against.
CONFIGS: dict[str, dict] = {
    "truncation": {"passage_aggregate": "first"},
    "max": {"passage_aggregate": "max"},
    "mean_top2": {"passage_aggregate": "mean_top2"},  # the default
    "max_w128": {"passage_aggregate": "max", "passage_window_tokens": 128, "passage_stride_tokens": 64},
    "max_uncut": {"passage_aggregate": "max", "rerank_input_snippet_chars": 0},
    "truncation_uncut": {"passage_aggregate": "first", "rerank_input_snippet_chars": 0},
}
TIMED = ("truncation", "mean_top2")  # mean_top2 scores the same pairs as max


def candidates(depth: int, qids: list[str], queries: dict[str, str]) -> tuple[dict[str, list[str]], dict, dict]:
    import bm25s
    import Stemmer

    docs = list(beir.iter_corpus(DATA))
    stemmer = Stemmer.Stemmer("english")
    retriever = bm25s.BM25(k1=1.2, b=0.75, method="lucene")
    retriever.index(bm25s.tokenize([f"{d.title}\n{d.text}" for d in docs], stopwords="en", stemmer=stemmer,
                                   show_progress=False), show_progress=False)
    tokens = bm25s.tokenize([queries[q] for q in qids], stopwords="en", stemmer=stemmer, show_progress=False)
    rows, scores = retriever.retrieve(tokens, k=depth, show_progress=False, n_threads=1)
    lists = {q: [docs[i].id for i in row] for q, row in zip(qids, rows)}
    bm25_run = {q: {docs[i].id: float(s) for i, s in zip(row, srow)} for q, row, srow in zip(qids, rows, scores)}
    texts = {d.id: f"{d.title}\n{d.text}".strip() for d in docs}
    return lists, bm25_run, texts


class Rig:
    """One loaded version, one batcher, and a reranker core per configuration over them."""

    def __init__(self, registry: FileRegistry, engine: dict):
        self.registry, self.engine = registry, engine

    async def __aenter__(self) -> Rig:
        self.settings = Settings(reranking={"reranker_mode": "local"}, engine=self.engine)
        self.pool = VersionPool(self.registry, self.settings.engine)
        await self.pool.refresh()
        self.batcher = Batcher(self.settings.engine)
        self.batcher.start()
        await self.core({}).rerank(RerankQuery("warm up", [Document("w", "the batch curve is measured here")]))
        return self

    async def __aexit__(self, *exc) -> None:
        await self.batcher.close()

    def core(self, changes: dict) -> RerankerCore:
        reranking = validated("reranking", RerankingSettings, self.settings.reranking, changes)
        settings = self.settings.model_copy(update={"reranking": reranking})
        return RerankerCore(settings, self.pool, self.batcher, ResultCache(0))

    async def rerank_all(self, changes: dict, lists: dict[str, list[str]], queries: dict[str, str],
                         texts: dict[str, str]) -> tuple[dict, int, float]:
        """(run, pairs scored, wall seconds) of one configuration, one request per query in turn."""
        core = self.core(changes)
        before = pairs_scored()
        run = {}
        started = time.perf_counter()
        for qid, ids in lists.items():
            outcome = await core.rerank(RerankQuery(queries[qid], [Document(i, texts[i]) for i in ids]))
            run[qid] = {r.id: r.score for r in outcome.results}
        return run, int(pairs_scored() - before), time.perf_counter() - started


def pairs_scored() -> float:
    """Rows of every forward pass so far (the batcher's histogram of pairs per batch)."""
    return REGISTRY.get_sample_value("feedrank_rerank_batch_pairs_sum") or 0.0


async def measure(registry: FileRegistry, configs: list[str], lists: dict[str, list[str]], queries: dict[str, str],
                  texts: dict[str, str], judged: dict, timed: dict[str, list[str]]) -> tuple[dict, dict]:
    rows: dict[str, dict] = {}
    # Quality: the document-vector cache on (the product's default), so a passage every configuration
    # shares (the first window) is encoded once; the pair counts are the same either way.
    async with Rig(registry, {}) as rig:
        for name in configs:
            run, pairs, _ = await rig.rerank_all(CONFIGS[name], lists, queries, texts)
            ndcg = metrics.evaluate(run, judged, ["ndcg@10"])["ndcg@10"]
            rows[name] = {"settings": CONFIGS[name], "ndcg@10": round(ndcg, 4), "pairs": pairs,
                          "pairs_ratio": round(pairs / rows["truncation"]["pairs"], 3) if rows else 1.0}
            print(f"{name:18s} nDCG@10 {ndcg:.4f}  pairs {pairs} (x{rows[name]['pairs_ratio']})", flush=True)
    # Cost: cold, every pair encoded, as a cross-encoder would be; the two configurations alternate per query.
    walls = {name: 0.0 for name in TIMED}
    async with Rig(registry, {"doc_vector_cache": 0}) as rig:
        for qid, ids in timed.items():
            for name in TIMED:
                walls[name] += (await rig.rerank_all(CONFIGS[name], {qid: ids}, queries, texts))[2]
    return rows, walls


def long_share(registry: FileRegistry, lists: dict[str, list[str]], texts: dict[str, str], chars: int) -> float:
    """Share of the reranked documents longer than one window (what truncation cuts)."""
    from services.engine.tokenize import TextTokenizer

    version = registry.resolve("champion")
    max_length = registry.manifest(version).max_length
    tokenizer = TextTokenizer(registry.local_path(version), max_length)
    ids = [i for row in lists.values() for i in row]
    cut = [texts[i][:chars] if chars else texts[i] for i in ids]
    room = max_length - tokenizer.overhead()
    return sum(len(e.ids) > room for e in tokenizer.document_tokens(cut)) / len(ids)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # The defaults keep a run to a few minutes on an idle 2-core machine (every passage is a 256-token pass).
    parser.add_argument("--depth", type=int, default=20, help="BM25 candidates reranked per query")
    parser.add_argument("--queries", type=int, default=100, help="first N test queries (0 = all 300)")
    parser.add_argument("--timed-queries", type=int, default=20,
                        help="queries of the cold-cache wall-time runs (truncation and the default, mean_top2)")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--registry", type=Path, default=None,
                        help="rerank with this registry's champion (e.g. $FEEDRANK_DATA_DIR/registry after "
                        "`feedrank model bootstrap`) instead of the packaged model exported here")
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        sys.exit(f"SciFact not found at {DATA}")
    t0 = time.perf_counter()
    queries = beir.load_queries(DATA)
    qrels = beir.load_qrels(DATA, "test")
    qids = sorted(q for q in qrels if q in queries)[: args.queries or None]
    lists, bm25_run, texts = candidates(args.depth, qids, queries)
    judged = {q: qrels[q] for q in qids}

    with tempfile.TemporaryDirectory() as tmp:
        if args.registry:
            registry = FileRegistry(args.registry)
        else:
            registry = FileRegistry(Path(tmp) / "registry")
            base = packaged_model_dir()
            import_bi_encoder(registry, base, base, EngineSettings(), query_max_length=QUERY_MAX_LENGTH,
                              doc_max_length=DOC_MAX_LENGTH, alias="champion")
        manifest = registry.manifest(registry.resolve("champion"))
        model = (PACKAGED if not args.registry else
                 f"champion {manifest.version_id} of {args.registry} ({manifest.kind}, base {manifest.base_model})")
        print(f"model: {model}", flush=True)
        chars = Settings().reranking.rerank_input_snippet_chars
        timed = dict(list(lists.items())[: args.timed_queries])
        configs = ["truncation"] + [c for c in args.configs if c != "truncation"]
        rows, walls = asyncio.run(measure(registry, configs, lists, queries, texts, judged, timed))
        share = long_share(registry, lists, texts, chars)

    best = max(rows, key=lambda n: rows[n]["ndcg@10"])
    result = {
        "benchmark": "passages",
        "dataset": f"scifact test ({len(qids)} queries), BM25 (bm25s) top {args.depth} reranked",
        "model": model,
        "rerank_input_snippet_chars": chars,
        "documents_longer_than_one_window": round(share, 3),
        "bm25_ndcg@10": round(metrics.evaluate(bm25_run, judged, ["ndcg@10"])["ndcg@10"], 4),
        "configs": rows,
        "best": best,
        "cold_wall_s": {name: round(wall, 2) for name, wall in walls.items()},
        "wall_ratio_passages_vs_truncation": round(walls["mean_top2"] / walls["truncation"], 3),
        "wall_time_queries": len(timed),
        "wall_time_note": "cold: no result cache, no document-vector cache; one request per query, the two "
                          "configurations alternating query by query",
        "seconds": round(time.perf_counter() - t0, 1),
        "machine": describe_machine(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "passages.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"BM25 {result['bm25_ndcg@10']}; {share:.0%} of reranked documents exceed one window; "
          f"wall time passages / truncation x{result['wall_ratio_passages_vs_truncation']} over {len(timed)} cold queries; "
          f"best: {best}")
    print(f"wrote {RESULTS / 'passages.json'} in {result['seconds']} s")


if __name__ == "__main__":
    main()
