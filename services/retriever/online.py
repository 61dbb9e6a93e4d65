"""The retriever's side of an online experiment: which searches are interleaved, and the merge that never
fails a search.

A search on a corpus with a running experiment is interleaved when a hash of (experiment id, search key) falls
under the experiment's share, so the assignment is reproducible and independent of the process. The
challenger's ranking comes from the reranker, asked for the corpus's challenger alias; it starts alongside the
champion's, so an interleaved search costs one more Rerank call in parallel, not in sequence. The
challenger's ranking is awaited with a deadline; when it is late or fails, the search is served the
champion's ranking alone and the fallback is counted (by reason), never surfaced as an error.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import grpc
from prometheus_client import Counter

from services.retriever.interleaving import query_coin, team_draft

INTERLEAVED = Counter("feedrank_interleaved_searches_total", "Searches served an interleaved list", ["corpus"])
FALLBACKS = Counter("feedrank_interleaving_fallbacks_total",
                    "Interleaved searches served the champion alone because the challenger failed",
                    ["corpus", "reason"])


@dataclass(frozen=True)
class OnlineExperiment:
    """What the retriever needs of a corpus's running experiment."""

    experiment_id: str
    corpus_id: str
    challenger_version: str
    share: float


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


async def challenger_ranking(rerank: Awaitable, experiment: OnlineExperiment, doc_ids: Sequence[str],
                             tail: Sequence[str] = ()) -> list[str]:
    """The challenger's order of `doc_ids` (the reranked head), then `tail` (the fused order below the head, as
    the champion's ranking has it), from a Rerank call that asked the corpus's
    challenger alias. Raises when the alias no longer serves the experiment's version (promoted, replaced or
    removed mid-experiment): crediting another version's ranking to this experiment would be wrong."""
    response = await rerank
    if response.model_version != experiment.challenger_version:
        raise ChallengerGone(f"the challenger alias serves {response.model_version or 'nothing'}, "
                             f"not {experiment.challenger_version}")
    scores = {r.index: r.score for r in response.results if 0 <= r.index < len(doc_ids)}
    return [doc_ids[i] for i in sorted(scores, key=lambda i: (-scores[i], i))] + list(tail)


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


