"""A sequential test on the challenger's win share among the interleaved queries that were not ties.

The test is a mixture sequential probability ratio test (Robbins, 1970; the "always valid p-value" of
Johari, Pekelis and Walsh, 2017): under the null hypothesis "win share = 1/2", the ratio

    L_n = B(a + wins, a + losses) / B(a, a) / (1/2) ** (wins + losses)

of a Beta(a, a)-mixture likelihood to the null's is a nonnegative martingale with L_0 = 1, so by Ville's
inequality P(L_n ever reaches 1/alpha) <= alpha. The test may therefore be looked at after every query and
stops as soon as L_n >= 1/alpha: a win when the challenger won more queries, a loss otherwise. Its type-I
error (deciding either way between two equally good rankers) is at most `alpha`, whatever the number of
looks. At the query budget (interleaved queries, ties included) without a crossing it ends undecided.
The p-value reported is the always-valid one, min over looks of 1 / L_n.

`prior_strength` a sets the effect sizes the test is most sensitive to: the prior's spread of the win share
around 1/2 is 1 / (2 sqrt(2a + 1)); a = 50 centres it on shares within about 0.05 of 1/2, which is what
interleaving sees between rankers a few hundredths of nDCG@10 apart.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

from services.trainer.online.credit import Outcome


class Verdict(enum.Enum):
    RUNNING = "running"
    WIN = "win"  # the challenger is better
    LOSS = "loss"  # the champion is better
    UNDECIDED = "undecided"  # the budget ran out first


@dataclass
class SequentialTest:
    alpha: float
    budget: int
    prior_strength: float = 50.0
    wins: int = 0
    losses: int = 0
    ties: int = 0
    p_value: float = 1.0
    verdict: Verdict = Verdict.RUNNING
    decided_at: int | None = field(default=None)

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError("alpha must be in (0, 1)")
        if self.budget < 1:
            raise ValueError("budget must be >= 1")
        if self.prior_strength <= 0:
            raise ValueError("prior_strength must be > 0")

    @property
    def queries(self) -> int:
        return self.wins + self.losses + self.ties

    def log_likelihood_ratio(self) -> float:
        a, w, lo = self.prior_strength, self.wins, self.losses
        return _log_beta(a + w, a + lo) - _log_beta(a, a) + (w + lo) * math.log(2.0)

    def update(self, outcome: Outcome) -> Verdict:
        """Count one interleaved query; a decided test ignores further queries."""
        if self.verdict is not Verdict.RUNNING:
            return self.verdict
        if outcome is Outcome.CHALLENGER_WINS:
            self.wins += 1
        elif outcome is Outcome.CHAMPION_WINS:
            self.losses += 1
        else:
            self.ties += 1
        self.p_value = min(self.p_value, math.exp(min(0.0, -self.log_likelihood_ratio())))
        if self.p_value <= self.alpha:
            self.verdict = Verdict.WIN if self.wins > self.losses else Verdict.LOSS
        elif self.queries >= self.budget:
            self.verdict = Verdict.UNDECIDED
        if self.verdict is not Verdict.RUNNING:
            self.decided_at = self.queries
        return self.verdict


def _log_beta(x: float, y: float) -> float:
    return math.lgamma(x) + math.lgamma(y) - math.lgamma(x + y)
