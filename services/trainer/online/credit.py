"""Team-draft credit (Radlinski, Kurup and Joachims, 2008): the team whose documents got more of an
interleaved query's clicks wins that query; equal counts (no click included) are a tie.

Input: the teams per shown position (1-based ranks index them) and the clicked ranks. A document clicked
twice counts once; a click outside the shown list is ignored (it cannot be credited to anyone).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence

from services.retriever.interleaving import CHALLENGER, CHAMPION


class Outcome(enum.Enum):
    CHALLENGER_WINS = "challenger_wins"
    CHAMPION_WINS = "champion_wins"
    TIE = "tie"


def credit(teams: Sequence[str], clicked_ranks: Iterable[int]) -> Outcome:
    ranks = {r for r in clicked_ranks if 1 <= r <= len(teams)}
    challenger = sum(1 for r in ranks if teams[r - 1] == CHALLENGER)
    champion = sum(1 for r in ranks if teams[r - 1] == CHAMPION)
    if challenger > champion:
        return Outcome.CHALLENGER_WINS
    if champion > challenger:
        return Outcome.CHAMPION_WINS
    return Outcome.TIE
