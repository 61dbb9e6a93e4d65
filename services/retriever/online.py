"""The retriever's side of an online experiment: which searches are interleaved, and the merge that never
fails a search.

A search on a corpus with a running experiment is interleaved when a hash of (experiment id, query id) falls
under the experiment's share, so the assignment is reproducible and independent of the process. The
challenger's ranking is awaited with a deadline; when it is late or fails, the search is served the
champion's ranking alone and the fallback is counted (by reason), never surfaced as an error.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

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


def assigned(experiment: OnlineExperiment, query_id: str) -> bool:
    digest = hashlib.blake2b(f"{experiment.experiment_id}\x00{query_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < experiment.share


async def interleave(experiment: OnlineExperiment, query_id: str, champion: Sequence[str],
                     challenger: Callable[[], Awaitable[Sequence[str]]], length: int, timeout_s: float) -> Served:
    """The team-draft merge of the champion's and the challenger's rankings, or the champion's alone."""
    try:
        challenger_ranking = await asyncio.wait_for(challenger(), timeout_s)
    except asyncio.TimeoutError:
        return _fallback(experiment, champion, length, "deadline")
    except Exception as err:  # noqa: BLE001 - any challenger fault falls back to the champion; counted by kind
        return _fallback(experiment, champion, length, type(err).__name__)
    if not challenger_ranking:
        return _fallback(experiment, champion, length, "empty")
    merged = team_draft(champion, challenger_ranking, length, query_coin(query_id, experiment.experiment_id))
    INTERLEAVED.labels(experiment.corpus_id).inc()
    return Served(merged.doc_ids, merged.teams, experiment.experiment_id)


def _fallback(experiment: OnlineExperiment, champion: Sequence[str], length: int, reason: str) -> Served:
    FALLBACKS.labels(experiment.corpus_id, reason).inc()
    return Served(tuple(champion[:length]), fallback_reason=f"challenger {experiment.challenger_version}: {reason}")


