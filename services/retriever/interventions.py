"""Randomised position-bias interventions on a share of user searches.

An intervened search shows the very results the ranking returned, reordered at random, so the same
document is seen at different ranks by comparable users: the trainer's propensity estimator
(services/trainer/propensity.py) reads the click rates per rank from those impressions. Each hit keeps
the rank the ranking gave it (`ranked_rank`), and the impression names the intervention.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Protocol, TypeVar

from services.common.config import InterventionSettings


class Ranked(Protocol):
    rank: int
    ranked_rank: int


H = TypeVar("H", bound=Ranked)


@dataclass(frozen=True)
class Intervention:
    kind: str  # "rand_pair" | "top_n_shuffle"
    depth: int  # the deepest rank it could move a result to or from


def eligible(settings: InterventionSettings, corpus_id: str, no_intervention: bool) -> bool:
    return settings.share > 0 and not no_intervention and corpus_id not in settings.opt_out_corpora


def intervene(hits: list[H], settings: InterventionSettings, rng: random.Random) -> tuple[list[H], Intervention | None]:
    """(hits in the order shown, the intervention drawn or None) for one eligible search.

    `hits` are ranked 1..n (`rank` = `ranked_rank`). Only the top `top_n` move; nothing is added or dropped."""
    depth = min(settings.top_n, len(hits))
    if depth < 2 or rng.random() >= settings.share:
        return hits, None
    shown = list(hits)
    if settings.kind == "rand_pair":
        k = rng.randint(2, depth)
        shown[0], shown[k - 1] = shown[k - 1], shown[0]
    else:
        head = shown[:depth]
        rng.shuffle(head)
        shown[:depth] = head
    for rank, hit in enumerate(shown, 1):
        hit.rank = rank
    return shown, Intervention(settings.kind, depth)
