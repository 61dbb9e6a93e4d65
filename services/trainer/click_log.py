"""The event log as logged searches: one impression joined with its clicks, and the judge's holdout.

Both the propensity estimator and the click judge read the log this way; mining reads the same events
with its own labelling rules (services/trainer/mining.py) and skips what the holdout keeps for the judge.

The holdout: a share of sessions (by a hash of the session id) is never mined. Users repeat queries, so a
held-out session alone would let its query be learned from another session and then judged, rewarding
memorisation the labelled test split (queries never seen) does not. So each normalised query belongs to
one side, the side of the session that searched it *first*:
- first searched in a held-out session: a judged query. None of its sessions is ever mined, and the click
  judge judges all of them (a session of it outside the hash share is unmined too: judging it wastes nothing).
- first searched in any other session: a learned query. Its later held-out sessions stay unmined (the hash
  share holds) and are dropped from judging: a model may already have learned the query from its first
  session, so judging it there would be judging memory. The judge records how many it dropped.
A query's side never changes as the log grows (later searches cannot be first), so every mining run, and the
champion each challenger fine-tunes from, learned only learned queries, and every judge replay agrees.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from services.events.store import EventStore
from services.trainer.candidates import TRAINER_SESSION
from services.trainer.corpus_data import normalize_query


@dataclass(frozen=True)
class LoggedClick:
    doc_id: str
    rank: int  # as shown
    dwell_ms: int


@dataclass
class LoggedSearch:
    """What one user was shown for one query, and what they clicked."""

    query_id: str
    session_id: str
    timestamp_ms: int
    query: str
    shown: list[str]  # doc ids in the order shown (index 0 = rank 1)
    ranked: list[int]  # the rank the ranking gave each of them (differs from the shown one under an intervention)
    intervention: str  # "" = shown as ranked
    intervention_depth: int
    clicks: list[LoggedClick] = field(default_factory=list)


# What the retriever logs for a search that named no session (services/retriever/convert.py): many users
# in one bucket, not a session, so it is never held out whole.
ANONYMOUS_SESSION = "anonymous"


def held_out(session_id: str, share: float) -> bool:
    """Is the session in the click judge's holdout? A stable hash of its id, the same in every process."""
    if session_id == ANONYMOUS_SESSION:
        return False
    digest = hashlib.sha256(f"judge-holdout:{session_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


@dataclass(frozen=True)
class Holdout:
    """Which side of the judge's holdout each search is on (the module's docstring says why)."""

    share: float
    judged_queries: frozenset[str]  # normalised queries first searched in a held-out session

    @classmethod
    def of(cls, searches: Iterable[tuple[int, str, str, str]], share: float) -> Holdout:
        """From the log's user searches as (timestamp_ms, query_id, session_id, query), in any order."""
        first: dict[str, bool] = {}
        for _, _, session_id, query in sorted(searches):
            first.setdefault(normalize_query(query), held_out(session_id, share))
        return cls(share, frozenset(q for q, judged in first.items() if judged))

    def judged(self, query: str) -> bool:
        """A judged query: the click judge's, every session of it, never mined."""
        return normalize_query(query) in self.judged_queries

    def mined(self, session_id: str, query: str) -> bool:
        """Whether mining may learn from this search: a learned query outside the held-out sessions."""
        return not held_out(session_id, self.share) and not self.judged(query)


def logged_searches(events: EventStore, corpus_id: str, until_ms: int | None = None) -> list[LoggedSearch]:
    """Every user search of the corpus (before `until_ms`) with its clicks, oldest first (the trainer's own
    searches left out)."""
    searches: dict[str, LoggedSearch] = {}
    for stored in events.iter_events("impression", corpus_id, until_ms=until_ms):
        if stored.session_id == TRAINER_SESSION:
            continue
        impression = stored.event.impression
        ordered = sorted(impression.results, key=lambda r: r.rank)
        searches[stored.query_id] = LoggedSearch(stored.query_id, stored.session_id, stored.timestamp_ms,
                                                 impression.query, [r.doc_id for r in ordered],
                                                 [r.ranked_rank or r.rank for r in ordered], impression.intervention,
                                                 impression.intervention_depth)
    seen: dict[str, set[str]] = defaultdict(set)
    for stored in events.clicks(corpus_id):
        search = searches.get(stored.query_id)
        click = stored.event.click
        # A click on a document the search did not show, or a repeat click, says nothing about examination.
        if search is None or click.doc_id not in search.shown or click.doc_id in seen[stored.query_id]:
            continue
        seen[stored.query_id].add(click.doc_id)
        search.clicks.append(LoggedClick(click.doc_id, search.shown.index(click.doc_id) + 1, click.dwell_ms))
    return sorted(searches.values(), key=lambda s: (s.timestamp_ms, s.query_id))
