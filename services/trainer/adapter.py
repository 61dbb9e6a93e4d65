"""The query-adapter recipe: a linear map W on the dense leg's query vectors, learned from feedback.

    q' = normalize(q + q W)      q: the base MiniLM query vector, W: 384 x 384 (zeros, or the champion's)
    score(q, d) = q' . d         d: the corpus vectors the dense leg already holds (never re-embedded)

Served twice (bench/learning.md row 8, 0.815-0.828 on SciFact test against the fused order's 0.711):
the retriever's vector leg embeds queries through the adapter (so the candidates and their fusion
change), and the reranker re-scores the fused top with a head over the legs and the adapted cosine.

Training is full-batch Adam on W with a softmax over the WHOLE corpus (every document a negative, so
the triplets' negatives are not needed): per query, -log of the weighted mean probability of its clicked
documents (a triplet's `weight`, e.g. inverse propensity, scales its pair; equal weights give the
research's -log sum p up to a constant). A seeded `dev_share` of the queries is held out: every
`adapter.eval_every` epochs their nDCG@10 under the adapted cosine over the whole corpus is measured and
the best W kept (W as it started included), which is early stopping on feedback. The head (a blend, or
a linear model over LegScores: services/trainer/heads.py) is then chosen on the same dev queries, over
the fused lists the adapted vector leg produces.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from services.common.config import FusionSettings, Settings, TrainingSettings
from services.common.errors import ErrorKind, FeedrankError
from services.common.legs import Candidate
from services.engine.manifest import Blend, Head, LinearHead, Manifest
from services.engine.pooling import adapt_queries
from services.ir import metrics as ir
from services.registry.importer import import_bi_encoder
from services.retriever.embedder import Embedder, packaged_model_dir
from services.retriever.fusion import LegHits, fuse_by, learned, legs_of
from services.retriever.ingest import embed_text
from services.trainer.candidates import CandidateSource
from services.trainer.corpus_data import CorpusData, normalize_query
from services.trainer.fusion_learner import learn_fusion
from services.trainer.heads import Pool, choose_head, ndcg
from services.trainer.mining import Triplet
from services.trainer.runs import RunContext
from services.trainer.training import Cancelled

log = logging.getLogger(__name__)


# -- the corpus's document vectors ---------------------------------------------------------------

def corpus_vectors(settings: Settings, data: CorpusData) -> tuple[list[str], np.ndarray]:
    """(ids sorted, float32 unit vectors) of every document, as the dense leg indexed them.

    The retriever keeps a copy of each vector in docs.sqlite. Corpora ingested before it did have none:
    their missing documents are embedded once with the retriever's own embedder and text
    (services.retriever.ingest.embed_text) and cached under trainer/doc_vectors/, keyed by corpus version.
    """
    stored_ids, stored = data.store.vectors()
    ids = data.doc_ids()
    if len(stored_ids) == len(ids):
        return stored_ids, stored
    key = hashlib.sha256(f"{data.corpus_id}|{data.version()}".encode()).hexdigest()[:16]
    cache = settings.data_path / "trainer" / "doc_vectors" / f"{data.corpus_id}-{key}.npy"
    if cache.is_file():
        return ids, np.load(cache)
    have = dict(zip(stored_ids, stored))
    missing = [i for i in ids if i not in have]
    log.info("embedding %d documents of %s without a stored vector", len(missing), data.corpus_id)
    embedder = Embedder.from_data_dir(settings.data_path, settings.engine, settings.retrieval.embedder_max_length,
                                      settings.retrieval.embed_batch_size,
                                      doc_precision=settings.retrieval.doc_precision)
    docs = data.store.get(missing)
    fresh = embedder.encode([embed_text(docs[i]) for i in missing])
    have.update(zip(missing, fresh))
    matrix = np.stack([have[i] for i in ids]).astype(np.float32)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f".{cache.name}.tmp.npy")
    np.save(tmp, matrix)
    tmp.replace(cache)
    return ids, matrix


def query_encoder(settings: Settings, training: TrainingSettings):
    """The base query tower at the served query length (the same ONNX embedder the dense leg runs)."""
    return Embedder.from_data_dir(settings.data_path, settings.engine, training.adapter.query_max_length,
                                  settings.retrieval.embed_batch_size)


# -- feedback ------------------------------------------------------------------------------------

@dataclass
class Feedback:
    """Queries and their clicked documents (rows of the corpus matrix) with pair weights."""

    texts: list[str] = field(default_factory=list)
    positives: list[dict[int, float]] = field(default_factory=list)
    unknown_docs: int = 0

    def qrels(self, rows: list[int]) -> dict[str, dict[str, int]]:
        return {str(i): {str(d): 1 for d in self.positives[i]} for i in rows}


def feedback_from_triplets(triplets: list[Triplet], index: dict[str, int]) -> Feedback:
    """Group pairs by (normalized) query; a pair seen twice keeps its larger weight."""
    out = Feedback()
    where: dict[str, int] = {}
    for t in triplets:
        row = index.get(t.positive_doc_id)
        if row is None:
            out.unknown_docs += 1  # an answer-set triplet, or a document deleted since mining
            continue
        key = normalize_query(t.query)
        if key not in where:
            where[key] = len(out.texts)
            out.texts.append(t.query)
            out.positives.append({})
        pos = out.positives[where[key]]
        pos[row] = max(pos.get(row, 0.0), max(float(t.weight), 1e-6))
    return out


def split_queries(texts: list[str], share: float, seed: int) -> tuple[list[int], list[int]]:
    """(train rows, dev rows): dev holds each query whose seeded text hash falls under `share`.

    Membership depends on the query's text alone, not on its row: a run warm-started from the champion
    never finds the champion's training queries in its dev split (the feedback run's rows come in another
    order than the bootstrap's), so early stopping and the head are chosen on queries W never saw.
    Only when both sides keep enough queries; else everything trains.
    """
    def unit(text: str) -> float:
        digest = hashlib.sha256(f"adapter-dev:{seed}:{normalize_query(text)}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    dev = [i for i, text in enumerate(texts) if unit(text) < share]
    if len(dev) < 2 or len(texts) - len(dev) < 1:
        return list(range(len(texts))), []
    chosen = set(dev)
    return [i for i in range(len(texts)) if i not in chosen], dev


# -- training ------------------------------------------------------------------------------------

def cosine_ndcg(q: np.ndarray, docs: np.ndarray, feedback: Feedback, rows: list[int], k: int = 100) -> float:
    """nDCG@10 of the adapted cosine over the whole corpus, the rows' feedback as relevance."""
    scores = q @ docs.T
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    run = {str(r): {str(int(d)): float(scores[i, d]) for d in top[i]} for i, r in enumerate(rows)}
    return ir.evaluate(run, feedback.qrels(rows), ("ndcg@10",))["ndcg@10"]


def train_adapter(
    queries: np.ndarray, positives: list[dict[int, float]], docs: np.ndarray, W0: np.ndarray,
    training: TrainingSettings, *, dev_eval: Callable[[np.ndarray], float] | None = None,
    on_loss: Callable[[int, float], None] = lambda epoch, loss: None,
    on_eval: Callable[[int, float], None] = lambda epoch, value: None,
    cancel: threading.Event | None = None,
) -> tuple[np.ndarray, dict[str, float]]:
    """Full-batch Adam on W; returns the best W (by dev_eval, when given) and final numbers."""
    if training.torch_threads:
        torch.set_num_threads(training.torch_threads)
    torch.manual_seed(training.seed)
    D = torch.from_numpy(np.ascontiguousarray(docs, dtype=np.float32))
    Q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    # log pair weights on the positives, -inf elsewhere: logsumexp over them is the weighted sum of p.
    log_w = torch.full((len(positives), D.shape[0]), -torch.inf)
    norm = torch.zeros(len(positives))
    for i, pos in enumerate(positives):
        rows = list(pos)
        w = torch.tensor([pos[r] for r in rows], dtype=torch.float32)
        log_w[i, rows] = torch.log(w)
        norm[i] = torch.log(w.sum())
    W = torch.tensor(np.ascontiguousarray(W0, dtype=np.float32), requires_grad=True)
    opt = torch.optim.Adam([W], lr=training.adapter.lr, weight_decay=training.adapter.weight_decay)
    best_W = np.asarray(W0, dtype=np.float32).copy()
    best = dev_eval(best_W) if dev_eval is not None else float("-inf")
    if dev_eval is not None:
        on_eval(0, best)
    loss_value = float("nan")
    for epoch in range(1, training.adapter.epochs + 1):
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        q = torch.nn.functional.normalize(Q + Q @ W, dim=-1)
        logits = training.adapter.scale * q @ D.T
        loss = (torch.logsumexp(logits, 1) - (torch.logsumexp(logits + log_w, 1) - norm)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss_value = float(loss.item())
        on_loss(epoch, loss_value)
        if epoch % training.adapter.eval_every == 0 or epoch == training.adapter.epochs:
            current = W.detach().numpy().copy()
            if dev_eval is None:
                best_W = current
                continue
            value = dev_eval(current)
            on_eval(epoch, value)
            if value > best + 1e-9:
                best, best_W = value, current
    final = {"train_loss": loss_value, "steps": float(training.adapter.epochs)}
    if dev_eval is not None:
        final["dev_cosine_ndcg@10"] = best
    return best_W, final


# -- the served candidates -------------------------------------------------------------------------

def adapted_legs(base: list[Candidate], query: np.ndarray, docs: np.ndarray, ids: list[str], depth: int) -> LegHits:
    """The legs the retriever serves once its vector leg embeds queries through the adapter.

    The other legs are the retriever's own (ranks and scores from its base-tower answer); the vector leg is
    re-run exactly over the corpus vectors with the adapted query vector, so the legs match the served ones
    up to the index's search.
    """
    legs = {name: hits[:depth] for name, hits in legs_of(base).items()}
    scores = docs @ query
    k = min(depth, len(scores))
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.argsort(-scores[top], kind="stable")]
    legs["vector"] = [(ids[i], float(scores[i])) for i in top]
    return legs


def adapted_candidates(base: list[Candidate], query: np.ndarray, docs: np.ndarray, ids: list[str], depth: int,
                       fusion: FusionSettings) -> list[Candidate]:
    """The fused list the retriever serves through the adapter, fused by the retriever's fusion code."""
    return fuse_by(adapted_legs(base, query, docs, ids, depth), fusion)


def pool(candidates: list[Candidate], scores: np.ndarray) -> Pool:
    """A head's input: the list, and the model's scores of its first len(scores) candidates."""
    return Pool([c.doc_id for c in candidates], candidates[: len(scores)], np.asarray(scores, dtype=np.float32))


# -- one run -------------------------------------------------------------------------------------

@dataclass
class AdapterOutcome:
    W: np.ndarray
    head: Head  # the head CV chose, recorded in the version's manifest
    metrics: dict[str, float]
    data: dict[str, Any]
    fusion: dict[str, Any] | None = None  # the learned fusion record (retriever.fusion.learned), when learned


def run_adapter(
    settings: Settings, training: TrainingSettings, corpus_id: str, triplets: list[Triplet], W0: np.ndarray | None,
    candidates: CandidateSource, cancel: threading.Event,
    metric: Callable[[int, float, str, float], None],
) -> AdapterOutcome:
    """Train W on the triplets' (query, clicked document) pairs and choose the head.

    `metric(step, epoch, name, value)` streams progress: `max_steps` first, `loss` per epoch,
    `eval_ndcg@10` (dev, adapted cosine over the whole corpus) every `adapter.eval_every` epochs.
    """
    data = CorpusData(settings, corpus_id)
    try:
        ids, docs = corpus_vectors(settings, data)
    finally:
        data.close()
    if docs.size == 0:
        raise FeedrankError(ErrorKind.FAILED_PRECONDITION, f"corpus {corpus_id} has no documents")
    index = {d: i for i, d in enumerate(ids)}
    feedback = feedback_from_triplets(triplets, index)
    if not feedback.texts:
        raise FeedrankError(ErrorKind.FAILED_PRECONDITION,
                            f"no triplet's positive is a document of {corpus_id}: nothing to train the adapter on")
    train_rows, dev_rows = split_queries(feedback.texts, training.dev_share, training.seed)
    encoder = query_encoder(settings, training)
    base_q = encoder.encode(feedback.texts)
    W0 = np.zeros((docs.shape[1], docs.shape[1]), np.float32) if W0 is None else W0.astype(np.float32)
    if W0.shape != (docs.shape[1], docs.shape[1]):
        raise FeedrankError(ErrorKind.FAILED_PRECONDITION,
                            f"the starting adapter is {W0.shape}, the corpus vectors are {docs.shape[1]}-d")

    def dev_eval(W: np.ndarray) -> float:
        return cosine_ndcg(adapt_queries(base_q[dev_rows], W), docs, feedback, dev_rows)

    metric(0, 0.0, "max_steps", float(training.adapter.epochs))
    epochs = float(training.adapter.epochs)
    W, final = train_adapter(
        base_q[train_rows], [feedback.positives[i] for i in train_rows], docs, W0, training,
        dev_eval=dev_eval if dev_rows else None,
        on_loss=lambda e, v: metric(e, float(e), "loss", v),
        on_eval=lambda e, v: metric(e, float(e), "eval_ndcg@10", v),
        cancel=cancel,
    )
    # The fusion and the head are chosen on dev feedback; with too few queries for a dev split, on the
    # training queries.
    chosen_on = dev_rows or train_rows
    adapted = adapt_queries(base_q[chosen_on], W)
    legs, base_pools = {}, {}
    window = training.eval_rerank_depth
    for j, row in enumerate(chosen_on):
        base = [c for c in candidates.candidates(corpus_id, feedback.texts[row], training.eval_depth) if c.doc_id in index]
        legs[str(row)] = adapted_legs(base, adapted[j], docs, ids, training.eval_depth)
        base_pools[str(row)] = pool(base, np.zeros(min(window, len(base)), np.float32))
    qrels = {str(r): {ids[d]: 1 for d in feedback.positives[r]} for r in chosen_on}
    fusion, fusion_numbers = settings.fusion, {}
    if training.fusion_choice.enabled:
        chosen = learn_fusion(legs, qrels, settings.fusion, training)
        fusion = chosen.fusion
        fusion_numbers = {"fusion_ndcg@10": chosen.ndcg, "configured_fusion_ndcg@10": chosen.configured_ndcg}
        log.info("fusion chosen among %d: %s (fused nDCG@10 %.4f, configured %.4f)", chosen.tried, learned(fusion),
                 chosen.ndcg, chosen.configured_ndcg)
    pools = {}
    for j, row in enumerate(chosen_on):
        served = fuse_by(legs[str(row)], fusion)
        pools[str(row)] = pool(served, docs[[index[c.doc_id] for c in served[:window]]] @ adapted[j])
    head, numbers = choose_head(pools, qrels, training)
    numbers["fused_ndcg@10"] = ndcg(base_pools, qrels, None)
    numbers.update(fusion_numbers)
    prefix = "dev" if dev_rows else "train"
    final.update({f"{prefix}_{k}": v for k, v in numbers.items()})
    if dev_rows:
        final["dev_ndcg@10"] = numbers["head_ndcg@10"]  # the served ranking on dev (runs list shows it)
    final.update({"epochs": epochs, **({"blend_weight": head.weight, "blend_depth": float(head.depth)}
                                       if isinstance(head, Blend) else {})})
    pairs = sum(len(feedback.positives[i]) for i in train_rows)
    by_source: dict[str, int] = {}
    for t in triplets:
        by_source[t.source] = by_source.get(t.source, 0) + 1
    out_data = {"triplets": len(triplets), "queries": len(feedback.texts), "train_queries": len(train_rows),
                "dev_queries": len(dev_rows), "train_pairs": pairs, "unknown_docs": feedback.unknown_docs,
                "head_chosen_on": prefix, "by_source": by_source}
    log.info("adapter trained: head %s (%s nDCG@10 %.4f, fused %.4f; CV blend %.4f, linear %.4f)", head, prefix,
             numbers["head_ndcg@10"], numbers["fused_ndcg@10"], numbers["cv_blend_ndcg@10"],
             numbers["cv_linear_ndcg@10"])
    return AdapterOutcome(W, head, final, out_data, learned(fusion) if training.fusion_choice.enabled else None)


def champion_adapter(folder: Path) -> np.ndarray | None:
    """A registry version's adapter.npy, if it has one (warm start)."""
    path = folder / "adapter.npy"
    return np.load(path).astype(np.float32) if path.is_file() else None


# -- the query-adapter recipe (services/trainer/recipes.py) ---------------------------------------

def run_query_adapter(ctx: RunContext) -> Manifest:
    """Train W and choose the head, published as a bi-encoder version: the corpus's challenger."""
    W0, start_name = start_adapter(ctx)
    ctx.started(start_name)
    log.info("run %s: query adapter from %s on %d triplets", ctx.run_id, start_name, len(ctx.triplets))

    def metric(step: int, epoch: float, name: str, value: float) -> None:
        ctx.runs.metric(ctx.run_id, step, epoch, name, value, "running")

    outcome = run_adapter(ctx.settings, ctx.training, ctx.record.corpus_id, ctx.triplets, W0, ctx.candidates,
                          ctx.cancel, metric)
    np.save(ctx.runs.dir(ctx.run_id) / "adapter.npy", outcome.W)
    ctx.runs.update(ctx.run_id, metrics=outcome.metrics, data=outcome.data)
    base = packaged_model_dir()
    head = {"linear_head": outcome.head} if isinstance(outcome.head, LinearHead) else {"blend": outcome.head}
    return import_bi_encoder(
        ctx.registry, base, base, ctx.settings.engine, query_max_length=ctx.training.adapter.query_max_length,
        doc_max_length=ctx.settings.retrieval.embedder_max_length, adapter=outcome.W,
        alias="challenger", corpus_id=ctx.record.corpus_id, reason=f"run {ctx.run_id}",
        # vector_leg_adapter: the retriever's vector leg serves this version through its adapter too.
        manifest_fields=ctx.manifest_fields(
            outcome.metrics, start_name, **head, doc_tower_is_dense_leg=True, vector_leg_adapter=True,
            triplets=outcome.data["triplets"], fusion=outcome.fusion,
            extra={"recipe": "query-adapter", "start_from": ctx.start_from, "by_source": outcome.data["by_source"]},
        ),
    )


def start_adapter(ctx: RunContext) -> tuple[np.ndarray | None, str]:
    """(starting W or None for zeros, name for the manifest): the corpus champion's adapter when it has one."""
    champion = ctx.registry.resolve("champion", ctx.record.corpus_id) if ctx.start_from == "champion" else None
    if champion is not None:
        W0 = champion_adapter(ctx.registry.local_path(champion))
        if W0 is not None:
            return W0, f"{champion} (adapter)"
        log.info("champion %s has no query adapter (a cross-encoder): the adapter starts from zeros", champion)
    return None, f"{packaged_model_dir()} (adapter from zeros)"
