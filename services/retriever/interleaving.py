"""Team-draft interleaving (Radlinski, Kurup and Joachims, 2008) of a champion's and a challenger's rankings.

The merged list is built in rounds: the team with fewer picks so far picks next (a coin decides when both
have as many), taking its highest-ranked document not already shown. Each position records the team that
contributed it, so a click can later be credited to one ranker (services/trainer/online/credit.py).

The coin is seeded by the query id, so a query's merge is reproducible (the impression can be rebuilt from
the two rankings) and independent of every other query's. Pure: no I/O, no feedrank imports.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

CHAMPION = "champion"
CHALLENGER = "challenger"
TEAMS = (CHAMPION, CHALLENGER)


class Coin(Protocol):
    def random(self) -> float: ...


@dataclass(frozen=True)
class Interleaved:
    """The merged list, best first, and per position the team whose ranking contributed the document."""

    doc_ids: tuple[str, ...]
    teams: tuple[str, ...]


def query_coin(query_id: str, salt: str = "") -> random.Random:
    """The coin for one query: seeded from a hash of (salt, query id), not from Python's per-process hash."""
    digest = hashlib.blake2b(f"{salt}\x00{query_id}".encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


def team_draft(champion: Sequence[str], challenger: Sequence[str], length: int, coin: Coin) -> Interleaved:
    """Merge the two rankings into at most `length` distinct documents.

    When one ranking runs out, the other fills the remaining positions; the list is shorter than `length`
    only when the two rankings together hold fewer distinct documents.
    """
    if length < 0:
        raise ValueError("length must be >= 0")
    rankings = {CHAMPION: champion, CHALLENGER: challenger}
    cursor = {CHAMPION: 0, CHALLENGER: 0}
    picks = {CHAMPION: 0, CHALLENGER: 0}
    shown: set[str] = set()
    doc_ids: list[str] = []
    teams: list[str] = []

    def next_unshown(team: str) -> str | None:
        ranking = rankings[team]
        while cursor[team] < len(ranking) and ranking[cursor[team]] in shown:
            cursor[team] += 1
        return ranking[cursor[team]] if cursor[team] < len(ranking) else None

    while len(doc_ids) < length:
        if picks[CHAMPION] == picks[CHALLENGER]:
            order = TEAMS if coin.random() < 0.5 else TEAMS[::-1]
        else:
            order = (CHAMPION, CHALLENGER) if picks[CHAMPION] < picks[CHALLENGER] else (CHALLENGER, CHAMPION)
        for team in order:
            doc = next_unshown(team)
            if doc is not None:
                break
        else:
            break  # both rankings exhausted
        shown.add(doc)
        doc_ids.append(doc)
        teams.append(team)
        picks[team] += 1
    return Interleaved(tuple(doc_ids), tuple(teams))
