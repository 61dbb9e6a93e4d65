"""The retriever's side of an online experiment: which searches are interleaved, and the merge that never
fails a search.

A search on a corpus with a running experiment is interleaved when a hash of (experiment id, search key) falls
under the experiment's share, so the assignment is reproducible and independent of the process. The
challenger ranks its own candidates (the legs fused by its learned fusion, its query adapter's vector leg:
retriever/core.py) with the reranker's corpus challenger alias; it starts alongside the champion's, so an
interleaved search costs one more Rerank call in parallel, not in sequence. The
challenger's ranking is awaited with a deadline; when it is late or fails, the search is served the
champion's ranking alone and the fallback is counted (by reason), never surfaced as an error.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import grpc
from prometheus_client import Counter, Histogram

from services.retriever.domain import Hit
from services.retriever.interleaving import CHALLENGER, CHAMPION, query_coin, team_draft

INTERLEAVED = Counter("feedrank_interleaved_searches_total", "Searches served an interleaved list", ["corpus"])
FALLBACKS = Counter("feedrank_interleaving_fallbacks_total",
                    "Interleaved searches served the champion alone because the challenger failed",
                    ["corpus", "reason"])
SHADOW_SECONDS = Histogram("feedrank_shadow_rerank_seconds", "The challenger's Rerank latency on shadowed searches",
                           ["corpus"])
SHADOW_OVERLAP = Histogram("feedrank_shadow_overlap_at_10", "Share of the champion's top 10 that the challenger "
                           "also ranks in its top 10, on shadowed searches", ["corpus"],
                           buckets=[i / 10 for i in range(11)])
SHADOW_SCORES = Histogram("feedrank_shadow_top10_score", "Rerank scores of each ranker's top 10 on shadowed "
                          "searches", ["corpus", "team"],
                          buckets=[-10, -5, -2, -1, -0.5, 0, 0.1, 0.25, 0.5, 0.75, 0.9, 1, 2, 5, 10])
SHADOW_FAILURES = Counter("feedrank_shadow_failures_total", "Shadowed searches whose challenger failed",
                          ["corpus", "reason"])


@dataclass(frozen=True)
class OnlineExperiment:
    """What the retriever needs of a corpus's running experiment."""

    experiment_id: str
    corpus_id: str
    challenger_version: str
    share: float
    shadow: bool = False  # scored beside the champion on the share of searches, never shown


@dataclass(frozen=True)
class Served:
    """The list a search shows; `teams` and `experiment_id` are empty unless it was interleaved."""

    doc_ids: tuple[str, ...]
    teams: tuple[str, ...] = ()
    experiment_id: str = ""
    fallback_reason: str = ""


def search_key(session_id: str, query: str) -> str:
    """What assigns a search and seeds its merge: the session and query, so one user repeating a query sees one
    list; a search with no session gets a fresh key (assigned and merged at random)."""
    return f"{session_id}\x00{query}" if session_id else uuid.uuid4().hex


@dataclass(frozen=True)
class Scored:
    """The challenger's ranking of its reranked head, best first, with its scores and how long it took;
    the fused order below its head; and its candidates by document id (to show those the champion lacks)."""

    ranked: tuple[tuple[str, float], ...]
    seconds: float
    tail: tuple[str, ...] = ()
    hits: Mapping[str, Hit] = field(default_factory=dict)


async def challenger_scores(rerank: Awaitable, experiment: OnlineExperiment, candidates: Sequence[Hit],
                            topn: int) -> Scored:
    """The challenger's order of its `candidates` (the first `topn` reranked, the rest in fused order) from a
    Rerank call that asked the corpus's challenger alias. Raises when the alias no longer serves the
    experiment's version (promoted, replaced or removed mid-experiment): crediting another version's ranking
    to this experiment would be wrong."""
    started = time.perf_counter()
    response = await rerank
    seconds = time.perf_counter() - started
    if response.model_version != experiment.challenger_version:
        raise ChallengerGone(f"the challenger alias serves {response.model_version or 'nothing'}, "
                             f"not {experiment.challenger_version}")
    head = [h.doc_id for h in candidates[:topn]]
    scores = {r.index: r.score for r in response.results if 0 <= r.index < len(head)}
    ranked = tuple((head[i], scores[i]) for i in sorted(scores, key=lambda i: (-scores[i], i)))
    tail = tuple(h.doc_id for h in candidates[topn:])
    return Scored(ranked, seconds, tail, {h.doc_id: h for h in candidates})


async def challenger_ranking(scored: Awaitable[Scored]) -> list[str]:
    """The challenger's ranking: its reranked head, then its fused order below the head."""
    done = await scored
    return [doc_id for doc_id, _ in done.ranked] + list(done.tail)


class ChallengerGone(Exception):
    """The experiment's challenger version is no longer served under the corpus's challenger alias."""


def assigned(experiment: OnlineExperiment, key: str) -> bool:
    digest = hashlib.blake2b(f"{experiment.experiment_id}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < experiment.share


async def interleave(experiment: OnlineExperiment, key: str, champion: Sequence[str],
                     challenger: Callable[[], Awaitable[Sequence[str]]], length: int, timeout_s: float) -> Served:
    """The team-draft merge of the champion's and the challenger's rankings, or the champion's alone."""
    try:
        challenger_ranking = await asyncio.wait_for(challenger(), timeout_s)
    except asyncio.TimeoutError:
        return _fallback(experiment, champion, length, "deadline")
    except grpc.aio.AioRpcError as err:
        return _fallback(experiment, champion, length, err.code().name, err.details() or "")
    except Exception as err:  # noqa: BLE001 - any challenger fault falls back to the champion; counted by kind
        return _fallback(experiment, champion, length, type(err).__name__, str(err))
    if not challenger_ranking:
        return _fallback(experiment, champion, length, "empty")
    merged = team_draft(champion, challenger_ranking, length, query_coin(key, experiment.experiment_id))
    INTERLEAVED.labels(experiment.corpus_id).inc()
    return Served(merged.doc_ids, merged.teams, experiment.experiment_id)


def _fallback(experiment: OnlineExperiment, champion: Sequence[str], length: int, reason: str,
              detail: str = "") -> Served:
    FALLBACKS.labels(experiment.corpus_id, reason).inc()
    said = f"{reason} ({detail})" if detail else reason
    return Served(tuple(champion[:length]), fallback_reason=f"challenger {experiment.challenger_version}: {said}")


async def shadow(experiment: OnlineExperiment, champion: Sequence[tuple[str, float]], scored: Awaitable[Scored],
                 timeout_s: float) -> str:
    """Score the challenger beside a search it is not shown on: its latency, its scores beside the champion's
    and the overlap of the two top 10s, as metrics. Returns the failure ("" when it answered)."""
    try:
        challenger = await asyncio.wait_for(scored, timeout_s)
    except asyncio.TimeoutError:
        reason = "deadline"
    except grpc.aio.AioRpcError as err:
        reason = err.code().name
    except Exception as err:  # noqa: BLE001 - a shadow never touches the search; counted by kind
        reason = type(err).__name__
    else:
        corpus = experiment.corpus_id
        SHADOW_SECONDS.labels(corpus).observe(challenger.seconds)
        mine, theirs = champion[:10], challenger.ranked[:10]
        if mine:
            SHADOW_OVERLAP.labels(corpus).observe(len({d for d, _ in mine} & {d for d, _ in theirs}) / len(mine))
        for team, ranked in ((CHAMPION, mine), (CHALLENGER, theirs)):
            for _, score in ranked:
                SHADOW_SCORES.labels(corpus, team).observe(score)
        return ""
    SHADOW_FAILURES.labels(experiment.corpus_id, reason).inc()
    return f"challenger {experiment.challenger_version}: {reason}"
