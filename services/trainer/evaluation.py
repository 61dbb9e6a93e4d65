"""Champion vs challenger on a corpus's frozen evaluation set, with a paired test.

Candidates are fetched from the retriever (rerank mode "none") once and cached on disk under
`evals/candidates/`, keyed by the eval set, the corpus version and the depth, so every model of
every evaluation reranks the very same lists; each candidate keeps its fused score.

What is evaluated is what is served: each model is its registry version loaded with the reranker's
`load_scorer` and the serving engine settings, given the top `eval_rerank_depth` fused candidates
(the retriever sends `reranking.tribrid_reranker_topn`: keep the two equal) with their fused scores
and, for a bi-encoder whose document tower is the dense leg, the documents' dense vectors (as the
retriever sends them); the version's head (`blend` or `linear_head` in its manifest) is applied by the
reranker's own `combine.final_scores`; long documents are scored as passages, as the reranker scores them
(`engine/passages.py`, `reranking.passage_*`). A version with `vector_leg_adapter` changes the candidates too,
as the retriever serves it: its adapter re-runs the vector leg over the corpus vectors and the legs
are fused again (`adapter.adapted_candidates`). A version with a learned fusion (manifest `fusion`,
services/trainer/fusion_learner.py) has its candidates fused by it, as the retriever serves it for
its corpus; every other list is fused by the configured fusion. Ties keep the fused order (stable sort), as the
reranker ranks. The rest of the list keeps the fused order. A model name that resolves to no version
(an unset alias) is the fused order itself.

Metrics come from services/ir/metrics.py. Results: `evals/<eval_id>.json` and `evals/latest.json`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import Gauge

from services.common.config import FusionSettings, Settings
from services.common.durable import write_json_atomic
from services.common.legs import Candidate, from_record, record
from services.engine.passages import passage_plan, passages_of
from services.engine.pooling import adapt_queries
from services.engine.scorer import Scorer, load_scorer
from services.ir import metrics as ir
from services.registry.store import Manifest, Registry
from services.reranker.combine import final_scores
from services.retriever.fusion import served_fusion
from services.trainer.adapter import adapted_candidates, champion_adapter, corpus_vectors, query_encoder
from services.trainer.candidates import CandidateSource
from services.trainer.corpus_data import CorpusData, EvalSet, eval_set
from services.trainer.fusion_learner import refused

log = logging.getLogger(__name__)

EVAL_METRIC = Gauge("feedrank_eval_metric", "Latest evaluation on the frozen set", ["corpus_id", "model", "metric"])
METRICS = ("mrr@10", "hit@1", "hit@3", "hit@5", "hit@10", "recall@10", "recall@100", "ndcg@10")
FUSED = "fused"


def paired_test(diffs: np.ndarray, kind: str, samples: int, seed: int) -> float:
    """One-sided p-value that the mean per-query difference (challenger - champion) is > 0 by chance."""
    if len(diffs) == 0 or not np.any(diffs):
        return 1.0
    rng = np.random.default_rng(seed)
    observed = diffs.mean()
    if kind == "randomization":
        # Under the null the two systems are exchangeable per query: flip each difference's sign.
        signs = rng.choice(np.array([-1.0, 1.0]), size=(samples, len(diffs)))
        extreme = int(((signs * diffs).mean(axis=1) >= observed).sum())
        return (extreme + 1) / (samples + 1)
    means = diffs[rng.integers(0, len(diffs), size=(samples, len(diffs)))].mean(axis=1)
    return float((int((means <= 0).sum()) + 1) / (samples + 1))


class Evaluator:
    def __init__(self, settings: Settings, registry: Registry, candidates: CandidateSource):
        self.settings = settings
        self.training = settings.training
        self.registry = registry
        self.candidates = candidates
        self.root = settings.data_path / "evals"

    # -- candidates ----------------------------------------------------------------------------

    def candidate_lists(self, data: CorpusData, es: EvalSet) -> tuple[dict[str, list[Candidate]], Path]:
        """{qid: the base query tower's fused candidates, best first}."""
        depth = self.training.eval_depth
        # "v3": entries carry every leg score (the heads need them); v2 held (id, fused score) only.
        key = hashlib.sha256(f"v3|{es.digest()}|{data.version()}|{depth}".encode()).hexdigest()[:16]
        path = self.root / "candidates" / f"{data.corpus_id}-{key}.json"
        if path.is_file():
            lists = json.loads(path.read_text())["lists"]
            return {q: [from_record(row) for row in rows] for q, rows in lists.items()}, path
        lists = {qid: self.candidates.candidates(data.corpus_id, text, depth) for qid, text in sorted(es.queries.items())}
        write_json_atomic(path, {"corpus_id": data.corpus_id, "eval_set": es.name, "depth": depth,
                                  "created_at": _now(),
                                  "lists": {q: [record(c) for c in rows] for q, rows in lists.items()}})
        return lists, path

    # -- one model's run -----------------------------------------------------------------------

    def model_run(self, version_id: str | None, data: CorpusData, es: EvalSet,
                  lists: dict[str, list[Candidate]]) -> dict[str, dict[str, float]]:
        """{qid: {doc: score}} where the score encodes the final order (head reranked, tail fused)."""
        if version_id is None:
            ordered = {qid: [c.doc_id for c in rows] for qid, rows in lists.items()}
        else:
            manifest = self.registry.manifest(version_id)
            folder = self.registry.local_path(version_id)
            scorer = load_scorer(folder, manifest, self.settings.engine)
            vectors = self._leg_vectors(data) if manifest.doc_tower_is_dense_leg else None
            fusion = served_fusion(manifest.fusion, self.settings.fusion)
            if manifest.vector_leg_adapter:
                lists = self._through_adapter(folder, data, es, lists, fusion)
            elif fusion != self.settings.fusion:
                lists = {qid: refused(rows, fusion) for qid, rows in lists.items()}
            ordered = {qid: self.rerank(scorer, manifest, es.queries[qid], rows, data, vectors)
                       for qid, rows in lists.items()}
        return {qid: {d: float(len(docs) - i) for i, d in enumerate(docs)} for qid, docs in ordered.items()}

    def rerank(self, scorer: Scorer, manifest: Manifest, query: str, rows: list[Candidate],
               data: CorpusData, vectors: dict[str, np.ndarray] | None) -> list[str]:
        """One query's final order, computed as RerankerCore computes it for the retriever's request."""
        depth = self.training.eval_rerank_depth
        texts = data.texts([c.doc_id for c in rows[:depth]])
        head = [c for c in rows[:depth] if c.doc_id in texts]
        tail = [c.doc_id for c in rows[depth:]]
        if not head:
            return tail
        docs = [texts[c.doc_id] for c in head]
        given = [vectors.get(c.doc_id) for c in head] if vectors is not None else [None] * len(head)
        # Long documents as the reranker serves them: passages, folded by reranking.passage_aggregate.
        plan = passage_plan(self.settings.reranking, scorer.passage_room(query))
        passages = passages_of(scorer, plan, docs, given)
        pieces, pieces_given = passages.texts, [given[i] for i in passages.owners]
        batch = self.settings.engine.max_batch_pairs
        scores = passages.fold(np.concatenate([
            scorer.score(scorer.prepare(query, pieces[i : i + batch], pieces_given[i : i + batch]))
            for i in range(0, len(pieces), batch)
        ]).astype(np.float32), plan.aggregate)
        scores = final_scores(manifest.head, scores, head)
        return [head[i].doc_id for i in np.argsort(-scores, kind="stable")] + tail

    def _leg_vectors(self, data: CorpusData) -> dict[str, np.ndarray]:
        """The dense leg's vector of every document (what the retriever sends with each rerank request)."""
        ids, matrix = corpus_vectors(self.settings, data)
        return dict(zip(ids, matrix))

    def _through_adapter(self, folder: Path, data: CorpusData, es: EvalSet, lists: dict[str, list[Candidate]],
                         fusion: FusionSettings) -> dict[str, list[Candidate]]:
        """The lists the retriever serves while this version's adapter embeds its vector leg's queries."""
        W = champion_adapter(folder)
        if W is None:
            return lists
        ids, docs = corpus_vectors(self.settings, data)
        known = set(ids)
        qids = sorted(lists)
        queries = adapt_queries(query_encoder(self.settings, self.training).encode([es.queries[q] for q in qids]), W)
        depth = self.training.eval_depth
        return {qid: adapted_candidates([c for c in lists[qid] if c.doc_id in known], q, docs, ids, depth, fusion)
                for qid, q in zip(qids, queries)}

    def resolve(self, name: str, default_alias: str, corpus_id: str) -> str | None:
        """A version id, or None for the fused order (the name "fused", or an alias of the corpus pointing nowhere)."""
        name = name or default_alias
        return None if name == FUSED else self.registry.resolve(name, corpus_id)

    # -- an evaluation -------------------------------------------------------------------------

    def evaluate(self, corpus_id: str, challenger: str = "", champion: str = "", *, save: bool = True) -> dict[str, Any]:
        challenger_id = self.resolve(challenger, "challenger", corpus_id)
        champion_id = self.resolve(champion, "champion", corpus_id)
        data = CorpusData(self.settings, corpus_id)
        try:
            es = eval_set(self.settings, data)
            started = time.perf_counter()
            lists, cache = self.candidate_lists(data, es)
            runs = {FUSED: self.model_run(None, data, es, lists)}
            runs["champion"] = runs[FUSED] if champion_id is None else self.model_run(champion_id, data, es, lists)
            if challenger_id == champion_id:
                runs["challenger"] = runs["champion"]
            else:
                runs["challenger"] = self.model_run(challenger_id, data, es, lists)
        finally:
            data.close()
        results = {name: ir.evaluate(run, es.qrels, METRICS) for name, run in runs.items()}
        for name, values in results.items():
            EVAL_METRIC.labels(corpus_id, name, "ndcg@10").set(values["ndcg@10"])
            EVAL_METRIC.labels(corpus_id, name, "mrr@10").set(values["mrr@10"])
        per_champ = ir.per_query(runs["champion"], es.qrels, "ndcg@10")
        per_chall = ir.per_query(runs["challenger"], es.qrels, "ndcg@10")
        qids = sorted(per_champ)
        diffs = np.array([per_chall[q] - per_champ[q] for q in qids])
        p = paired_test(diffs, self.training.gate.paired_test, self.training.gate.test_samples, self.training.seed)
        record = {
            "eval_id": time.strftime("e%Y%m%d-%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6],
            "created_at": _now(),
            "corpus_id": corpus_id,
            "eval_set": es.name,
            "queries": len(es.queries),
            "depth": self.training.eval_depth,
            "rerank_depth": self.training.eval_rerank_depth,
            "candidates_cache": str(cache),
            "champion": self._describe(champion or "champion", champion_id),
            "challenger": self._describe(challenger or "challenger", challenger_id),
            "metrics": results,
            "ndcg_gain": float(diffs.mean()) if len(diffs) else 0.0,
            "p_value": p,
            "test": {"kind": self.training.gate.paired_test, "samples": self.training.gate.test_samples, "sided": "one",
                     "wins": int((diffs > 0).sum()), "losses": int((diffs < 0).sum()), "ties": int((diffs == 0).sum())},
            "seconds": round(time.perf_counter() - started, 2),
        }
        if save:
            self.root.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.root / f"{record['eval_id']}.json", record)
            write_json_atomic(self.root / "latest.json", record)
        log.info("evaluated", extra={"fields": {"corpus": corpus_id, "gain": record["ndcg_gain"], "p": p}})
        return record


    def _describe(self, name: str, version_id: str | None) -> dict[str, str]:
        """The model's name as asked, its version and the run that trained it (lineage of the numbers)."""
        run_id = self.registry.manifest(version_id).run_id if version_id else ""
        return {"name": name, "version_id": version_id or FUSED, "run_id": run_id}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
