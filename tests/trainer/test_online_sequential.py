"""The sequential test: its type-I error on simulated ties, its power on a real difference, its stops."""

from __future__ import annotations

import random

import pytest

from services.trainer.online.credit import Outcome
from services.trainer.online.sequential import SequentialTest, Verdict


def simulate(win: float, loss: float, *, alpha: float, budget: int, seed: int) -> SequentialTest:
    """One experiment: each interleaved query is a challenger win, a champion win or a tie."""
    rng = random.Random(seed)
    test = SequentialTest(alpha=alpha, budget=budget)
    while test.verdict is Verdict.RUNNING:
        u = rng.random()
        test.update(Outcome.CHALLENGER_WINS if u < win else Outcome.CHAMPION_WINS if u < win + loss
                    else Outcome.TIE)
    return test


@pytest.mark.parametrize("alpha", [0.05, 0.2])
def test_type_one_error_on_ties_is_at_most_alpha(alpha):
    # Two equally good rankers (wins and losses equally likely, most queries ties), looked at after every
    # query up to the budget: deciding either way is a type-I error.
    experiments = 1000
    wrong = sum(simulate(0.2, 0.2, alpha=alpha, budget=2000, seed=s).verdict is not Verdict.UNDECIDED
                for s in range(experiments))
    rate = wrong / experiments
    tolerance = 3 * (alpha * (1 - alpha) / experiments) ** 0.5
    assert rate <= alpha + tolerance, f"type-I error {rate:.3f} above alpha {alpha}"


def test_a_naive_test_looked_at_every_query_would_fail_the_same_check():
    # The check above can fail: a fixed-sample sign test peeked at after every query errs far above alpha.
    experiments, alpha, wrong = 300, 0.05, 0
    for seed in range(experiments):
        rng, diff, decided = random.Random(seed), 0, 0
        for _ in range(2000):
            u = rng.random()
            if u < 0.4:
                diff += 1 if u < 0.2 else -1
                decided += 1
                if decided >= 10 and abs(diff) / decided ** 0.5 > 1.96:
                    wrong += 1
                    break
    assert wrong / experiments > 3 * alpha


def test_a_better_challenger_wins_and_a_worse_one_loses():
    wins = [simulate(0.25, 0.15, alpha=0.05, budget=5000, seed=s) for s in range(50)]
    assert sum(t.verdict is Verdict.WIN for t in wins) >= 45
    assert all(t.verdict is not Verdict.LOSS for t in wins)
    losses = [simulate(0.15, 0.25, alpha=0.05, budget=5000, seed=s) for s in range(50)]
    assert sum(t.verdict is Verdict.LOSS for t in losses) >= 45
    decided = wins[0]
    assert decided.p_value <= 0.05 and decided.decided_at == decided.queries < 5000


def test_the_budget_ends_it_undecided_and_later_queries_change_nothing():
    test = SequentialTest(alpha=0.05, budget=3)
    assert test.update(Outcome.TIE) is Verdict.RUNNING
    test.update(Outcome.CHALLENGER_WINS)
    assert test.update(Outcome.CHAMPION_WINS) is Verdict.UNDECIDED
    assert test.update(Outcome.CHALLENGER_WINS) is Verdict.UNDECIDED
    assert (test.wins, test.losses, test.ties, test.decided_at) == (1, 1, 1, 3)
    assert test.p_value == 1.0


def test_the_p_value_never_rises():
    test, rng, last = SequentialTest(alpha=1e-9, budget=500), random.Random(3), 1.0
    for _ in range(500):
        test.update(rng.choice(list(Outcome)))
        assert test.p_value <= last
        last = test.p_value


@pytest.mark.parametrize("kwargs, field", [({"alpha": 0.0}, "alpha"), ({"alpha": 1.0}, "alpha"),
                                           ({"budget": 0}, "budget"), ({"prior_strength": 0}, "prior_strength")])
def test_bad_parameters_are_refused(kwargs, field):
    with pytest.raises(ValueError, match=field):
        SequentialTest(**{"alpha": 0.05, "budget": 10, **kwargs})
