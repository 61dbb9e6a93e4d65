"""Evaluating the retriever's legs, fusion methods and (when reachable) the reranker on a
corpus's qrels, the way `feedrank eval` reports them.

Rows: one per leg (`bm25`, `dense`), one per fusion method (`rrf`, `weighted-minmax`, `weighted-zscore`,
`dbsf`), and `<configured fusion>+rerank` when a reranker answers. Each leg is retrieved to
`depth` (>= 100, so Recall@100 is meaningful); the fused rows rank the union of the legs.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from services.common.errors import invalid
from services.common.legs import LEGS
from services.ir import beir, metrics
from services.retriever import convert
from services.retriever.domain import Hit
from services.retriever.fusion import fuse_by

FUSIONS = {
    "rrf": {"method": "rrf"},
    "weighted-minmax": {"method": "weighted", "normalization": "minmax"},
    "weighted-zscore": {"method": "weighted", "normalization": "zscore"},
    "dbsf": {"method": "dbsf"},
}
LEG_ROWS = {"lexical": "bm25", "vector": "dense"}  # a leg's row in the report (the leg's name if not here)


@dataclass
class EvalResult:
    corpus_id: str
    split: str
    queries: int
    depth: int
    rows: dict[str, dict[str, float]]
    runs: dict[str, dict[str, dict[str, float]]] = field(repr=False)
    notes: list[str]
    info: dict

    def as_dict(self) -> dict:
        return {
            "corpus_id": self.corpus_id, "split": self.split, "queries": self.queries, "depth": self.depth,
            "metrics": self.rows, "notes": self.notes, **self.info,
        }


def load_split(corpus_root: Path, split: str) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    queries = beir.load_queries(corpus_root)
    if not queries:
        raise invalid("corpus_id", f"{corpus_root.name} has no queries.jsonl: it was not ingested from a BEIR dataset")
    qrels = beir.load_qrels(corpus_root, split)
    missing = [q for q in qrels if q not in queries]
    if missing:
        raise invalid("split", f"{len(missing)} judged queries have no text in queries.jsonl (e.g. {missing[0]})")
    return queries, qrels


def evaluate_corpus(core, corpus_id: str, split: str, *, depth: int = 100, rerank: bool = True) -> EvalResult:
    """`core` is a RetrieverCore; queries run one at a time through the same legs as Search."""
    corpus = core.corpora.get(corpus_id)
    queries, qrels = load_split(corpus.root, split)
    depth = max(depth, 100)
    leg_rows = {name: LEG_ROWS.get(name, name) for name in LEGS}
    runs: dict[str, dict[str, dict[str, float]]] = {name: {} for name in (*leg_rows.values(), *FUSIONS)}
    fused_lists: dict[str, list] = {}
    fusion = core.config.fusion
    leg_ms: dict[str, list[float]] = {name: [] for name in LEGS}
    for qid in sorted(qrels):
        legs = core.legs(corpus, queries[qid], depth)
        for name, hits in legs.hits.items():
            leg_ms[name].append(legs.ms[name])
            runs[leg_rows[name]][qid] = dict(hits)
        for name, overrides in FUSIONS.items():
            fused = fuse_by(legs.hits, fusion.model_copy(update=overrides))
            runs[name][qid] = {f.doc_id: f.score for f in fused}
            if name == _configured_row(fusion):
                fused_lists[qid] = fused
    notes = []
    if rerank:
        reranked, note = asyncio.run(_rerank_runs(core, corpus, queries, fused_lists))
        if reranked is not None:
            runs[f"{_configured_row(fusion)}+rerank"] = reranked
        notes.append(note)
    rows = {name: metrics.evaluate(run, qrels, metrics.DEFAULT_METRICS) for name, run in runs.items()}
    union_recall = metrics.evaluate(
        {q: {d: 1.0 for row in leg_rows.values() for d in runs[row][q]} for q in qrels}, qrels,
        [f"recall@{len(LEGS) * depth}"]
    )
    notes.append(f"union of the legs' top {depth}: recall {next(iter(union_recall.values())):.4f}")
    info = {
        "embedder": core.embedder.version,
        "lexical_backend": core.settings.retrieval.lexical_backend,
        "vector_backend": core.settings.retrieval.vector_backend,
        "fusion": fusion.model_dump(),
        **{f"{name}_ms_p50": _p50(ms) for name, ms in leg_ms.items()},
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return EvalResult(corpus_id, split, len(qrels), depth, rows, runs, notes, info)


def _configured_row(fusion) -> str:
    return fusion.method if fusion.method != "weighted" else f"weighted-{fusion.normalization}"


def _p50(values: list[float]) -> float:
    return round(sorted(values)[len(values) // 2], 3) if values else 0.0


async def _rerank_runs(core, corpus, queries, fused_lists) -> tuple[dict | None, str]:
    """Rerank each query's fused top N; (None, why) when no reranker answers."""
    reranking = core.config.reranking
    topn = reranking.tribrid_reranker_topn
    if reranking.reranker_mode == "none" or topn == 0:
        return None, "fused+rerank skipped: reranking.reranker_mode is none"
    run: dict[str, dict[str, float]] = {}
    model_version = ""
    try:
        for qid, fused in fused_lists.items():
            head = fused[:topn]
            docs = corpus.store.get([f.doc_id for f in head])
            hits = [Hit(f.doc_id, "", "", f) for f in head]
            vectors = corpus.vector.vectors([h.doc_id for h in hits]) if core.settings.retrieval.send_vectors_to_reranker else {}
            request = convert.rerank_request(
                queries[qid], hits, docs, reranking.rerank_input_snippet_chars,
                reranking.reranker_local_model if reranking.reranker_mode == "local" else "", vectors,
            )
            response = await core.reranker.rerank(request, max(reranking.reranker_timeout, 30.0))
            model_version = response.model_version
            scores = {f.doc_id: 0.0 for f in fused}
            # Reranked documents go first in reranker order; the rest keep the fused order below them.
            for position, result in enumerate(response.results):
                scores[head[result.index].doc_id] = 2.0 * len(fused) - position
            for f in fused[topn:]:
                scores[f.doc_id] = float(len(fused) - f.rank)
            run[qid] = scores
    except grpc.aio.AioRpcError as err:
        return None, f"fused+rerank skipped: reranker at {core.reranker.target} answered {err.code().name}"
    finally:
        await core.reranker.close()
    return run, f"fused+rerank: top {topn} reranked by {model_version}"


def write_report(result: EvalResult, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = out_dir / f"retriever-{result.corpus_id}-{result.split}-{stamp}.json"
    path.write_text(json.dumps(result.as_dict(), indent=2))
    return path
