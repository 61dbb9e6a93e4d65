"""Interleaving benchmark (`make bench-interleaving`, a few minutes of CPU): queries needed to decide an
nDCG@10 difference online, team-draft interleaving against an A/B split of traffic, on the same simulated users.

Simulator with known relevance: SciFact's 300 test queries and their qrels. Each query gets a candidate pool
(its relevant documents and 30 others drawn from the corpus) and two rankers score it: relevance times a
signal plus Gaussian noise, the two rankers' noises correlated (rho = 0.8, as two rerankers of one fused list
mostly agree). The champion's signal is fixed; the challenger's is searched so that its mean nDCG@10 over the
300 queries exceeds the champion's by the difference asked (0.01, 0.02, 0.05), per query better on some and
worse on others. (Constructed rankings, not the served ones: building the real fused rankings needs the
retriever's index, minutes of embedding on this machine's CPUs.)

Users, two populations in one run (services/demo/simulate.py; demo.population documents each choice):
- homogeneous: the demo's click model (`ClickModel`: position-based examination (1/rank)^decay, clicks on
  relevant and on noise, stop after a satisfying click), every user alike;
- heterogeneous: each user a click propensity (a factor on click probabilities, Gamma(1), mean 1) and a
  patience (decay log-uniform in [0.5, 2]), each query an intent (a fifth navigational, the rest
  informational: Hofmann, Whiteson and de Rijke's cascade models), a geometric number of searches per user
  (mean 5); the distributions were chosen from the literature before this benchmark ran. For exact
  computation the users are 6 x 6 equally likely types, one per pair of sextile bins of the two traits.
For each query and user type the outcome distributions on a 10-result page are computed exactly, not
sampled: interleaving over all the team-draft coin sequences (win / loss / tie), the A/B page's distribution
of clicks per query.

Decision at p < 0.05 (two-sided), power 0.8. Interleaving: a sign test on wins against losses, experiments of
N searches simulated from those distributions. The A/B split, on the same users and queries and the same N
searches, two ways: split by query (a coin per search; a two-sample z-test on clicks per search and on
click-through, experiments simulated) and split by user (the usual A/B test: a user stays in their arm; the
metric per search is a ratio of per-user sums, its variance by the delta method, so a user who clicks a lot or
never weighs in with all their searches; the searches needed come from the exact moments, as the test's
normal approximation). Each A/B figure is the more sensitive of its two metrics. "Queries needed" is the
smallest N on a geometric grid (steps of 15%) deciding the right way in 80% of runs. It also runs the
trainer's sequential test (services/trainer/online/sequential.py) on simulated interleaved traffic and
reports the median queries at which it stopped and how often it decided rightly.

Writes bench/results/interleaving.json and bench/results/interleaving.png.
"""

from __future__ import annotations

import argparse
import bisect
import dataclasses
import itertools
import json
import math
import platform
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import special, stats

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from services.common.config import InterleavingSettings, PopulationSettings  # noqa: E402
from services.demo.simulate import INTENTS, ClickModel, Population, SimulatedUser  # noqa: E402
from services.ir.beir import iter_corpus, load_qrels  # noqa: E402
from services.ir.metrics import per_query  # noqa: E402
from services.retriever.interleaving import CHALLENGER, team_draft  # noqa: E402
from services.trainer.online.credit import Outcome  # noqa: E402
from services.trainer.online.sequential import SequentialTest, Verdict  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "scifact"
RESULTS = REPO / "bench" / "results"
PAGE = 10
POOL_OTHERS = 30
RHO = 0.8
CHAMPION_SIGNAL = 1.5
ALPHA, POWER = 0.05, 0.8
SEQUENTIAL_BUDGET = 1_000_000  # interleaved queries; a sequential run not stopped by then is undecided
METRICS = ("clicks", "click_through")
PRIOR_STRENGTH = InterleavingSettings().prior_strength  # the sequential test as the trainer runs it
QUANTILES = 6  # the heterogeneous population as 6 x 6 equally likely users (propensity x patience quantiles)


def candidate_pools(qrels: dict[str, dict[str, int]], doc_ids: list[str], rng: random.Random) -> dict[str, list[str]]:
    pools = {}
    for qid in sorted(qrels):
        relevant = [d for d, g in qrels[qid].items() if g > 0]
        others = [d for d in rng.sample(doc_ids, POOL_OTHERS + len(relevant)) if d not in qrels[qid]][:POOL_OTHERS]
        pools[qid] = relevant + others
    return pools


class Rankers:
    """Champion and challenger scores for every query's pool, the noises drawn once (seeded)."""

    def __init__(self, pools: dict[str, list[str]], qrels: dict[str, dict[str, int]], seed: int):
        rng = np.random.default_rng(seed)
        self.pools, self.qrels = pools, qrels
        self.relevance = {q: np.array([qrels[q].get(d, 0) > 0 for d in pool], float) for q, pool in pools.items()}
        self.noise_a = {q: rng.standard_normal(len(p)) for q, p in pools.items()}
        self.noise_b = {q: RHO * self.noise_a[q] + (1 - RHO**2) ** 0.5 * rng.standard_normal(len(p))
                        for q, p in pools.items()}

    def ranking(self, signal: float, noise: dict[str, np.ndarray]) -> dict[str, list[str]]:
        return {q: [self.pools[q][i] for i in np.argsort(-(signal * self.relevance[q] + noise[q]), kind="stable")]
                for q in self.pools}

    def champion(self) -> dict[str, list[str]]:
        return self.ranking(CHAMPION_SIGNAL, self.noise_a)

    def challenger(self, signal: float) -> dict[str, list[str]]:
        return self.ranking(signal, self.noise_b)

    def ndcg(self, rankings: dict[str, list[str]]) -> dict[str, float]:
        run = {q: {d: float(len(r) - i) for i, d in enumerate(r)} for q, r in rankings.items()}
        return per_query(run, self.qrels, f"ndcg@{PAGE}")

    def challenger_for(self, difference: float, tolerance: float = 0.001) -> tuple[dict[str, list[str]], float]:
        """The challenger whose mean nDCG@10 beats the champion's by `difference` (bisection on its signal:
        with the noises fixed, a larger signal only moves relevant documents up)."""
        target = float(np.mean(list(self.ndcg(self.champion()).values()))) + difference
        lo, hi = CHAMPION_SIGNAL - 3.0, CHAMPION_SIGNAL + 6.0
        for _ in range(40):
            mid = (lo + hi) / 2
            value = float(np.mean(list(self.ndcg(self.challenger(mid)).values())))
            if abs(value - target) <= tolerance:
                return self.challenger(mid), mid
            lo, hi = (mid, hi) if value < target else (lo, mid)
        raise RuntimeError(f"no challenger signal reaches an nDCG@{PAGE} difference of {difference}")


class ScriptedCoin:
    def __init__(self, bits: tuple[int, ...]):
        self.bits = iter(bits)

    def random(self) -> float:
        return 0.25 if next(self.bits, 0) else 0.75


@dataclass(frozen=True)
class Clicks:
    """Several users' click models side by side (one array entry per user type): the exact distributions below
    are computed for all of them at once."""

    decay: np.ndarray
    click_relevant: np.ndarray
    click_noise: np.ndarray
    stop_relevant: np.ndarray
    stop_noise: np.ndarray

    @classmethod
    def of(cls, models: Sequence[ClickModel]) -> Clicks:
        def column(name: str) -> np.ndarray:
            return np.array([getattr(m, name) for m in models], float)[:, None]

        return cls(column("examination_decay"), column("click_relevant"), column("click_noise"),
                   column("stop_after_relevant"), column("stop_after_noise"))

    def click_at(self, rank: int, relevant: bool) -> np.ndarray:
        """P(click) at `rank` for a user still browsing: examined ((1/rank)^decay) and clicked."""
        return (1.0 / rank) ** self.decay * (self.click_relevant if relevant else self.click_noise)

    def stop(self, relevant: bool) -> np.ndarray:
        return self.stop_relevant if relevant else self.stop_noise


def credit_distribution(relevant: Sequence[bool], challenger_team: Sequence[bool],
                        clicks: Clicks) -> tuple[np.ndarray, np.ndarray]:
    """Exact P(challenger wins), P(champion wins) on one interleaved page, per user type (cascade)."""
    width = 2 * PAGE + 1  # clicks(challenger) - clicks(champion), offset by PAGE: never wraps on a page
    browsing = np.zeros((len(clicks.decay), width))
    browsing[:, PAGE] = 1.0
    stopped = np.zeros_like(browsing)
    for rank, (rel, team) in enumerate(zip(relevant, challenger_team), start=1):
        p_click, stop = clicks.click_at(rank, rel), clicks.stop(rel)
        clicked = np.roll(browsing * p_click, 1 if team else -1, axis=1)
        stopped += clicked * stop
        browsing = browsing * (1 - p_click) + clicked * (1 - stop)
    stopped += browsing
    return stopped[:, PAGE + 1:].sum(axis=1), stopped[:, :PAGE].sum(axis=1)


def clicks_distribution(relevant: Sequence[bool], clicks: Clicks) -> np.ndarray:
    """Exact distribution of the number of clicks on one page, per user type (rows), under the cascade."""
    browsing = np.zeros((len(clicks.decay), PAGE + 1))
    browsing[:, 0] = 1.0
    done = np.zeros_like(browsing)
    for rank, rel in enumerate(relevant, start=1):
        p_click, stop = clicks.click_at(rank, rel), clicks.stop(rel)
        clicked = np.roll(browsing * p_click, 1, axis=1)
        done += clicked * stop
        browsing = browsing * (1 - p_click) + clicked * (1 - stop)
    return done + browsing


@dataclass(frozen=True)
class Users:
    """A population as the bench computes with it: equally likely user types, their click models on each
    query, and how many searches a user makes (geometric, this mean)."""

    name: str
    types: int
    clicks_for: Callable[[str], Clicks]  # query id -> the types' click models on it
    queries_per_user: float
    described: dict

    @property
    def cluster_factor(self) -> float:
        """E[m^2] / E[m] of the searches per user m (geometric): how much a per-user effect weighs in a
        user-split A/B test's variance, against 1 in a query-split one."""
        return 2 * self.queries_per_user - 1


def homogeneous(model: ClickModel, queries_per_user: float) -> Users:
    clicks = Clicks.of([model])
    return Users("homogeneous", 1, lambda q: clicks, queries_per_user,
                 {"click_model": dataclasses.asdict(model), "queries_per_user": queries_per_user})


def quantile_users(settings: PopulationSettings, per_trait: int) -> list[SimulatedUser]:
    """`per_trait`^2 equally likely users, one per pair of `per_trait`-quantile bins of the two traits: the
    population as a finite mixture, for exact computations. A bin's propensity is its mean (so the mixture
    keeps the mean of 1: E[X; a < X < b] of a Gamma(k) is its mean times the Gamma(k + 1) mass of (a, b)); a
    bin's patience is its midpoint in log space (decay is log-uniform)."""
    shape = settings.propensity_shape
    edges = stats.gamma.ppf(np.linspace(0, 1, per_trait + 1), shape, scale=1 / shape)
    mass = np.diff(stats.gamma.cdf(edges, shape + 1, scale=1 / shape))
    propensities = [float(m * per_trait) for m in mass]
    low, high = math.log(settings.decay_min), math.log(settings.decay_max)
    decays = [math.exp(low + (i + 0.5) / per_trait * (high - low)) for i in range(per_trait)]
    return [SimulatedUser(p, d) for p in propensities for d in decays]


def heterogeneous(settings: PopulationSettings, base: ClickModel) -> Users:
    population = Population(settings, base)
    types = quantile_users(settings, QUANTILES)
    by_intent: dict[str, Clicks] = {}

    def clicks_for(query_id: str) -> Clicks:
        intent = population.intent(query_id)
        if intent not in by_intent:
            by_intent[intent] = Clicks.of([population.behaviour(u, query_id) for u in types])
        return by_intent[intent]

    return Users("heterogeneous", len(types), clicks_for, settings.queries_per_user,
                 {"population": settings.model_dump(), "intents": INTENTS, "quantiles_per_trait": QUANTILES})


def interleaving_outcomes(champion: dict[str, list[str]], challenger: dict[str, list[str]],
                          qrels: dict[str, dict[str, int]], users: Users) -> np.ndarray:
    """Per query and user type (P(win), P(loss)), averaged over the 2^(PAGE/2) equally likely team-draft coin
    sequences (those giving the same page computed once). Shape (queries, types, 2)."""
    sequences = list(itertools.product((0, 1), repeat=PAGE // 2))
    out = []
    for q in sorted(champion):
        pages: Counter[tuple[tuple[bool, ...], tuple[bool, ...]]] = Counter()
        for bits in sequences:
            merged = team_draft(champion[q], challenger[q], PAGE, ScriptedCoin(bits))
            pages[(tuple(qrels[q].get(d, 0) > 0 for d in merged.doc_ids),
                   tuple(t == CHALLENGER for t in merged.teams))] += 1
        clicks = users.clicks_for(q)
        total = np.zeros((users.types, 2))
        for (relevant, teams), times in pages.items():
            total += times * np.stack(credit_distribution(relevant, teams, clicks), axis=1)
        out.append(total / len(sequences))
    return np.array(out)


def page_clicks(rankings: dict[str, list[str]], qrels: dict[str, dict[str, int]], users: Users) -> np.ndarray:
    """Per user type, the distribution of clicks per page over the queries (uniform): (types, PAGE+1)."""
    return np.mean([clicks_distribution([qrels[q].get(d, 0) > 0 for d in rankings[q][:PAGE]],
                                        users.clicks_for(q)) for q in sorted(rankings)], axis=0)


def grid() -> list[int]:
    return sorted({int(round(50 * 1.15**i)) for i in range(150)})


def on_grid(n: float) -> int:
    return next(g for g in grid() if g >= n)


def queries_by_type(n: int, users: Users, runs: int, rng: np.random.Generator) -> np.ndarray:
    """Per simulated experiment (rows), the searches each user type made, each search's user drawn
    independently. One user's several searches would change neither simulated test measurably: interleaving's
    design effect (reported per row) stays under 1.01, and a coin per search spreads a user over both arms of
    a query split. They matter in a user split, which ab_by_user computes from exact moments."""
    return rng.multinomial(n, np.full(users.types, 1 / users.types), size=runs)


def power_interleaving(outcomes: np.ndarray, users: Users, n: int, runs: int,
                       rng: np.random.Generator) -> float:
    """`outcomes`: per type (P(win), P(loss), P(tie)) over the queries. Sign test on wins against losses."""
    counts = rng.multinomial(queries_by_type(n, users, runs, rng), outcomes).sum(axis=1)
    wins, losses = counts[:, 0], counts[:, 1]
    p = np.minimum(1.0, 2 * stats.binom.cdf(np.minimum(wins, losses), wins + losses, 0.5))
    return float(np.mean((p < ALPHA) & (wins > losses)))


def metric_values(metric: str) -> np.ndarray:
    return np.arange(PAGE + 1, dtype=float) if metric == "clicks" else (np.arange(PAGE + 1) > 0).astype(float)


def power_ab_by_query(dist_a: np.ndarray, dist_b: np.ndarray, users: Users, n: int, runs: int,
                      rng: np.random.Generator, metric: str) -> float:
    """A coin per search picks its arm; a two-sample z-test on the metric per search."""
    values = metric_values(metric)
    by_type = queries_by_type(n, users, runs, rng)
    in_b = rng.binomial(by_type, 0.5)
    means, variances = [], []
    for dist, arm in ((dist_a, by_type - in_b), (dist_b, in_b)):
        counts = rng.multinomial(arm, dist / dist.sum(axis=1, keepdims=True)).sum(axis=1)
        size = np.maximum(arm.sum(axis=1), 1)
        mean = counts @ values / size
        means.append(mean)
        variances.append(np.maximum(counts @ values**2 / size - mean**2, 1e-12) / size)
    z = (means[1] - means[0]) / np.sqrt(variances[0] + variances[1])
    return float(np.mean(z > stats.norm.ppf(1 - ALPHA / 2)))


def per_query_moments(dist: np.ndarray, values: np.ndarray) -> tuple[float, float, float]:
    """(population mean, mean within-type variance, variance of the type means) of a metric per search."""
    mu = dist @ values
    within = dist @ values**2 - mu**2
    return float(mu.mean()), float(within.mean()), float(mu.var())


def ab_by_user(dist_a: np.ndarray, dist_b: np.ndarray, users: Users, metric: str) -> dict:
    """A user-split A/B test (the usual one: a user stays in their arm), the metric per search as a ratio of
    per-user sums, its variance by the delta method (Deng et al., KDD 2018). Searches needed for power 0.8 at
    two-sided p < 0.05 from the exact moments: Var = (2/N) sum over arms of (within + cluster x between)."""
    values = metric_values(metric)
    (mean_a, within_a, between_a), (mean_b, within_b, between_b) = (per_query_moments(d, values)
                                                                    for d in (dist_a, dist_b))
    per_search = [w + users.cluster_factor * b for w, b in ((within_a, between_a), (within_b, between_b))]
    difference = mean_b - mean_a
    z = stats.norm.ppf(1 - ALPHA / 2) + stats.norm.ppf(POWER)
    needed = 2 * z**2 * sum(per_search) / difference**2 if difference > 0 else None
    return {"queries": on_grid(needed) if needed else None,
            "design_effect": round(per_search[0] / (within_a + between_a), 3)}


def sign_test_estimate(p_win: float, p_loss: float) -> float | None:
    """Searches the sign test needs, by the normal approximation: where the grid scan starts."""
    share = p_win / (p_win + p_loss)
    if share <= 0.5:
        return None
    za, zb = stats.norm.ppf(1 - ALPHA / 2), stats.norm.ppf(POWER)
    return ((za * 0.5 + zb * (share * (1 - share)) ** 0.5) / (share - 0.5)) ** 2 / (p_win + p_loss)


def queries_needed(power_at, estimate: float | None, runs: int, rng: np.random.Generator) -> int | None:
    """The smallest grid point whose simulated experiments decide rightly in POWER of runs, scanning from a
    little under `estimate` (the normal approximation) down or up; None when no estimate (the rankers'
    order is the wrong way round for this test) or past the grid."""
    points = grid()
    if estimate is None or estimate > points[-1]:
        return None
    i = bisect.bisect_left(points, 0.7 * estimate)
    i = min(i, len(points) - 1)
    if power_at(points[i], runs, rng) >= POWER:
        while i > 0 and power_at(points[i - 1], runs, rng) >= POWER:
            i -= 1
        return points[i]
    for n in points[i + 1:]:
        if power_at(n, runs, rng) >= POWER:
            return n
    return None


def sequential_runs(p_win: float, p_loss: float, experiments: int, budget: int, seed: int) -> dict:
    """The trainer's sequential test on simulated interleaved traffic. Its statistic is computed for a whole
    experiment at once (numpy, SequentialTest's formula); the first experiment is also fed query by query to
    SequentialTest itself, and must stop at the same query with the same verdict."""
    rng = np.random.default_rng(seed)
    a, threshold = PRIOR_STRENGTH, math.log(1 / ALPHA)
    stops, right, wrong = [], 0, 0
    for experiment in range(experiments):
        u = rng.random(budget)
        wins, losses = np.cumsum(u < p_win), np.cumsum((u >= p_win) & (u < p_win + p_loss))
        llr = (special.gammaln(a + wins) + special.gammaln(a + losses)
               - special.gammaln(2 * a + wins + losses) - (2 * special.gammaln(a) - special.gammaln(2 * a))
               + (wins + losses) * math.log(2.0))
        crossed = np.flatnonzero(llr >= threshold)
        stop = int(crossed[0]) + 1 if crossed.size else budget
        verdict = (Verdict.UNDECIDED if not crossed.size
                   else Verdict.WIN if wins[stop - 1] > losses[stop - 1] else Verdict.LOSS)
        if experiment == 0:
            test = SequentialTest(alpha=ALPHA, budget=budget, prior_strength=a)
            for x in u:
                if test.update(Outcome.CHALLENGER_WINS if x < p_win else Outcome.CHAMPION_WINS
                               if x < p_win + p_loss else Outcome.TIE) is not Verdict.RUNNING:
                    break
            assert (test.decided_at, test.verdict) == (stop, verdict), "the vectorised test disagrees"
        stops.append(stop)
        right += verdict is Verdict.WIN
        wrong += verdict is Verdict.LOSS
    return {"experiments": experiments, "budget": budget, "median_queries": int(np.median(stops)),
            "wins": right, "losses": wrong, "undecided": experiments - right - wrong}


def interleaving_design_effect(per_type: np.ndarray, users: Users) -> float:
    """How much one user's several interleaved searches inflate the variance of wins - losses (1 = not at
    all): the sign test treats searches as independent; this says whether it may."""
    e = per_type[:, 0] - per_type[:, 1]
    within = float(np.mean(per_type[:, 0] + per_type[:, 1] - e**2))
    return round((within + users.cluster_factor * float(e.var())) / (within + float(e.var())), 4)


def ratio(numerator: int | None, denominator: int | None) -> float | None:
    return round(numerator / denominator, 2) if numerator and denominator else None


def measure(rankers: Rankers, champion: dict[str, list[str]], champion_per_q: dict[str, float],
            challenger: dict[str, list[str]], signal: float, difference: float, users: Users,
            args: argparse.Namespace, rng: np.random.Generator, seed: int) -> dict:
    per_q = rankers.ndcg(challenger)
    per_type = interleaving_outcomes(champion, challenger, rankers.qrels, users).mean(axis=0)  # (types, 2)
    outcomes = np.column_stack([per_type, 1 - per_type.sum(axis=1)])
    p_win, p_loss = (float(x) for x in per_type.mean(axis=0))
    dist_a = page_clicks(champion, rankers.qrels, users)
    dist_b = page_clicks(challenger, rankers.qrels, users)
    interleaving_n = queries_needed(lambda n, r, g: power_interleaving(outcomes, users, n, r, g),
                                    sign_test_estimate(p_win, p_loss), args.runs, rng)
    by_user = {metric: ab_by_user(dist_a, dist_b, users, metric) for metric in METRICS}
    by_query = {}
    for metric in METRICS:
        # Where the scan starts: the user split's approximation without the per-user term.
        start = dataclasses.replace(users, queries_per_user=1.0)
        by_query[metric] = queries_needed(
            lambda n, r, g, m=metric: power_ab_by_query(dist_a, dist_b, users, n, r, g, m),
            ab_by_user(dist_a, dist_b, start, metric)["queries"], args.runs, rng)
    by_query_n = min((n for n in by_query.values() if n is not None), default=None)
    by_user_n = min((v["queries"] for v in by_user.values() if v["queries"] is not None), default=None)
    top_overlap = np.mean([len(set(champion[q][:PAGE]) & set(challenger[q][:PAGE])) / PAGE for q in champion])
    values = metric_values("clicks")
    row = {
        "population": users.name,
        "construction_seed": seed,
        "ndcg_difference": difference,
        "champion_ndcg@10": round(float(np.mean(list(champion_per_q.values()))), 4),
        "challenger_ndcg@10": round(float(np.mean(list(per_q.values()))), 4),
        "challenger_signal": round(signal, 4),
        "queries_challenger_better": sum(per_q[q] > v for q, v in champion_per_q.items()),
        "queries_challenger_worse": sum(per_q[q] < v for q, v in champion_per_q.items()),
        "top10_overlap": round(float(top_overlap), 3),
        "interleaving_p_win": round(p_win, 5), "interleaving_p_loss": round(p_loss, 5),
        "interleaving_design_effect": interleaving_design_effect(per_type, users),
        "ab_clicks_per_query": [round(float((d @ values).mean()), 5) for d in (dist_a, dist_b)],
        "ab_click_through": [round(float(1 - d[:, 0].mean()), 5) for d in (dist_a, dist_b)],
        "interleaving_queries": interleaving_n,
        "ab_by_query_queries_by_metric": by_query,
        "ab_by_query_queries": by_query_n,
        "ab_by_user_by_metric": by_user,
        "ab_by_user_queries": by_user_n,
        "ratio_ab_by_query_to_interleaving": ratio(by_query_n, interleaving_n),
        "ratio_ab_by_user_to_interleaving": ratio(by_user_n, interleaving_n),
        "sequential": sequential_runs(p_win, p_loss, args.sequential_experiments,
                                      budget=SEQUENTIAL_BUDGET, seed=seed),
    }
    print(f"{users.name}, construction {seed}, nDCG@10 +{difference}: interleaving {interleaving_n} queries, "
          f"A/B by query {by_query_n}, by user {by_user_n}; ratios {row['ratio_ab_by_query_to_interleaving']}"
          f", {row['ratio_ab_by_user_to_interleaving']}", flush=True)
    return row


def median_of(values: list) -> int | None:
    """The median, an undecided (None) counting as more than any number."""
    value = float(np.median([np.inf if v is None else v for v in values]))
    return None if np.isinf(value) else int(value)


def summarise(rows: list[dict], differences: list[float]) -> list[dict]:
    """Per population and difference, the medians over the constructions (a construction's figures swing with
    its noises)."""
    out = []
    for population in dict.fromkeys(r["population"] for r in rows):
        for difference in differences:
            mine = [r for r in rows if r["ndcg_difference"] == difference and r["population"] == population]
            summary = {"population": population, "ndcg_difference": difference, "constructions": len(mine)}
            for key in ("interleaving_queries", "ab_by_query_queries", "ab_by_user_queries"):
                summary[key] = median_of([r[key] for r in mine])
            for split in ("by_query", "by_user"):
                ratios = [r[f"ratio_ab_{split}_to_interleaving"] for r in mine]
                known = [x for x in ratios if x is not None]
                summary[f"ratio_ab_{split}_to_interleaving"] = (round(float(np.median(known)), 2)
                                                                if known else None)
                summary[f"ratio_ab_{split}_range"] = [min(known), max(known)] if known else None
            summary["interleaving_design_effect"] = max(r["interleaving_design_effect"] for r in mine)
            stops = [r["sequential"]["median_queries"] for r in mine]
            summary["sequential_median_queries"] = int(np.median(stops))
            summary["sequential_wrong_decisions"] = sum(r["sequential"]["losses"] for r in mine)
            out.append(summary)
    return out


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, population in zip(axes, ("homogeneous", "heterogeneous")):
        mine = [r for r in rows if r["population"] == population]
        xs = [r["ndcg_difference"] for r in mine]
        for key, style, label in (
            ("interleaving_queries", "o-", "team-draft interleaving (sign test)"),
            ("sequential_median_queries", "^--", "interleaving, sequential test (median)"),
            ("ab_by_query_queries", "s-", "A/B split by query (best click metric)"),
            ("ab_by_user_queries", "D-", "A/B split by user (best click metric, delta method)"),
        ):
            ax.plot(xs, [r[key] if r[key] is not None else np.nan for r in mine], style, label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("nDCG@10 difference (challenger - champion)")
        ax.set_title(f"{population} users")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel(f"queries to decide (p < {ALPHA}, power {POWER})")
    axes[1].legend(fontsize=8)
    fig.suptitle("SciFact test queries, constructed rankings")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--differences", type=float, nargs="+", default=[0.01, 0.02, 0.05])
    parser.add_argument("--runs", type=int, default=400, help="simulated experiments per query count")
    parser.add_argument("--sequential-experiments", type=int, default=40)
    parser.add_argument("--constructions", type=int, default=3,
                        help="ranking constructions (seeds), each with its own pools, noises and challengers")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    qrels = load_qrels(DATA, "test")
    doc_ids = sorted(doc.id for doc in iter_corpus(DATA))
    model = ClickModel()
    settings = PopulationSettings(kind="heterogeneous")  # the documented defaults, as the demo would use them
    populations = [homogeneous(model, settings.queries_per_user), heterogeneous(settings, model)]
    rng = np.random.default_rng(args.seed)
    rows = []
    for seed in range(args.seed, args.seed + args.constructions):
        rankers = Rankers(candidate_pools(qrels, doc_ids, random.Random(seed)), qrels, seed)
        champion = rankers.champion()
        champion_per_q = rankers.ndcg(champion)
        for difference in args.differences:
            challenger, signal = rankers.challenger_for(difference)
            for users in populations:
                rows.append(measure(rankers, champion, champion_per_q, challenger, signal, difference, users,
                                    args, rng, seed))
    summary = summarise(rows, args.differences)

    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "interleaving",
        "dataset": "scifact test qrels (300 queries), constructed rankings",
        "populations": {users.name: users.described for users in populations},
        "alpha": ALPHA, "power": POWER, "runs_per_query_count": args.runs, "seed": args.seed,
        "summary": summary,
        "rows": rows,
        "seconds": round(time.perf_counter() - t0, 1),
        "machine": platform.platform(),
    }
    (RESULTS / "interleaving.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(summary, RESULTS / "interleaving.png")
    for row in summary:
        print(f"{row['population']}, nDCG@10 +{row['ndcg_difference']}: interleaving "
              f"{row['interleaving_queries']} queries; A/B by query {row['ab_by_query_queries']} (ratio "
              f"{row['ratio_ab_by_query_to_interleaving']}, range {row['ratio_ab_by_query_range']}); "
              f"A/B by user {row['ab_by_user_queries']} (ratio {row['ratio_ab_by_user_to_interleaving']}, "
              f"range {row['ratio_ab_by_user_range']}); sequential test median "
              f"{row['sequential_median_queries']}")
    print(f"wrote {RESULTS / 'interleaving.json'} and interleaving.png in {result['seconds']} s")


if __name__ == "__main__":
    main()
