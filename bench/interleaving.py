"""Interleaving benchmark (`make bench-interleaving`, about two minutes of CPU): queries needed to decide an
nDCG@10 difference online, team-draft interleaving against an A/B split of traffic, on the same simulated users.

Simulator with known relevance: SciFact's 300 test queries and their qrels. Each query gets a candidate pool
(its relevant documents and 30 others drawn from the corpus) and two rankers score it: relevance times a
signal plus Gaussian noise, the two rankers' noises correlated (rho = 0.8, as two rerankers of one fused list
mostly agree). The champion's signal is fixed; the challenger's is searched so that its mean nDCG@10 over the
300 queries exceeds the champion's by the difference asked (0.01, 0.02, 0.05), per query better on some and
worse on others. (Constructed rankings, not the served ones: building the real fused rankings needs the
retriever's index, minutes of embedding on this machine's CPUs.)

Users: the demo's click model (services/demo/simulate.py, `ClickModel`: position-based examination
(1/rank)^decay, clicks on relevant and on noise, stop after a satisfying click) on a 10-result page.
For each query the outcome distributions are computed exactly, not sampled: interleaving over all the
team-draft coin sequences (win / loss / tie), the A/B page's distribution of clicks per query.

Decision at p < 0.05 (two-sided), power 0.8, measured by simulating experiments of N queries drawn from
those distributions (the queries uniform over the 300): interleaving by a sign test on wins against losses,
the A/B split (N/2 queries per arm) by a two-sample z-test on clicks per query and on click-through (share of
queries with a click); the A/B figure is the more sensitive of the two. "Queries needed" is the smallest N
on a geometric grid whose experiments decide the right way in 80% of runs. It also runs the trainer's
sequential test (services/trainer/online/sequential.py) on simulated interleaved traffic and reports the
median queries at which it stopped and how often it decided rightly.

Writes bench/results/interleaving.json and bench/results/interleaving.png.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from services.demo.simulate import ClickModel  # noqa: E402
from services.evaluation.beir import iter_corpus, load_qrels  # noqa: E402
from services.evaluation.metrics import per_query  # noqa: E402
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
SEQUENTIAL_BUDGET = 100_000  # interleaved queries; a sequential run that has not stopped by then is undecided


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


def credit_distribution(relevant: list[bool], challenger_team: list[bool], model: ClickModel) -> tuple[float, float]:
    """Exact P(challenger wins), P(champion wins) on one interleaved page under the cascade click model."""
    browsing = {0: 1.0}  # clicks(challenger) - clicks(champion) -> probability of still browsing
    stopped: dict[int, float] = {}
    for rank, (rel, team) in enumerate(zip(relevant, challenger_team), start=1):
        p_click = model.examination(rank) * model.click(rel)
        step = 1 if team else -1
        nxt: dict[int, float] = {}
        for diff, p in browsing.items():
            nxt[diff] = nxt.get(diff, 0.0) + p * (1 - p_click)
            clicked = p * p_click
            stopped[diff + step] = stopped.get(diff + step, 0.0) + clicked * model.stop(rel)
            nxt[diff + step] = nxt.get(diff + step, 0.0) + clicked * (1 - model.stop(rel))
        browsing = nxt
    for diff, p in browsing.items():
        stopped[diff] = stopped.get(diff, 0.0) + p
    return sum(p for d, p in stopped.items() if d > 0), sum(p for d, p in stopped.items() if d < 0)


def clicks_distribution(relevant: list[bool], model: ClickModel) -> np.ndarray:
    """Exact distribution of the number of clicks on one page under the cascade click model."""
    browsing, done = np.zeros(PAGE + 1), np.zeros(PAGE + 1)
    browsing[0] = 1.0
    for rank, rel in enumerate(relevant, start=1):
        p_click = model.examination(rank) * model.click(rel)
        clicked = np.roll(browsing * p_click, 1)
        done += clicked * model.stop(rel)
        browsing = browsing * (1 - p_click) + clicked * (1 - model.stop(rel))
    return done + browsing


def interleaving_outcomes(champion: dict[str, list[str]], challenger: dict[str, list[str]],
                          qrels: dict[str, dict[str, int]], model: ClickModel) -> np.ndarray:
    """Per query (P(win), P(loss)), averaged over the 2^(PAGE/2) equally likely team-draft coin sequences."""
    out = []
    for q in sorted(champion):
        sequences = list(itertools.product((0, 1), repeat=PAGE // 2))
        win = loss = 0.0
        for bits in sequences:
            merged = team_draft(champion[q], challenger[q], PAGE, ScriptedCoin(bits))
            w, lo = credit_distribution([qrels[q].get(d, 0) > 0 for d in merged.doc_ids],
                                        [t == CHALLENGER for t in merged.teams], model)
            win, loss = win + w, loss + lo
        out.append((win / len(sequences), loss / len(sequences)))
    return np.array(out)


def page_clicks(rankings: dict[str, list[str]], qrels: dict[str, dict[str, int]], model: ClickModel) -> np.ndarray:
    """Mixture over the queries of the distribution of clicks per page (queries uniform)."""
    return np.mean([clicks_distribution([qrels[q].get(d, 0) > 0 for d in rankings[q][:PAGE]], model)
                    for q in sorted(rankings)], axis=0)


def grid() -> list[int]:
    return sorted({int(round(50 * 1.15**i)) for i in range(120)})


def power_interleaving(p_win: float, p_loss: float, n: int, runs: int, rng: np.random.Generator) -> float:
    counts = rng.multinomial(n, [p_win, p_loss, 1 - p_win - p_loss], size=runs)
    wins, losses = counts[:, 0], counts[:, 1]
    p = np.minimum(1.0, 2 * stats.binom.cdf(np.minimum(wins, losses), wins + losses, 0.5))
    return float(np.mean((p < ALPHA) & (wins > losses)))


def power_ab(dist_a: np.ndarray, dist_b: np.ndarray, n: int, runs: int, rng: np.random.Generator,
             metric: str) -> float:
    values = np.arange(PAGE + 1) if metric == "clicks" else (np.arange(PAGE + 1) > 0).astype(float)
    half = n // 2
    means, variances = [], []
    for dist in (dist_a, dist_b):
        counts = rng.multinomial(half, dist / dist.sum(), size=runs)
        mean = counts @ values / half
        means.append(mean)
        variances.append(np.maximum(counts @ values**2 / half - mean**2, 1e-12) / half)
    z = (means[1] - means[0]) / np.sqrt(variances[0] + variances[1])
    return float(np.mean(z > stats.norm.ppf(1 - ALPHA / 2)))


def queries_needed(power_at, runs: int, rng: np.random.Generator) -> int | None:
    for n in grid():
        if power_at(n, runs, rng) >= POWER:
            return n
    return None


def sequential_runs(p_win: float, p_loss: float, experiments: int, budget: int, seed: int) -> dict:
    rng = random.Random(seed)
    stops, right, wrong = [], 0, 0
    for _ in range(experiments):
        test = SequentialTest(alpha=ALPHA, budget=budget)
        while test.verdict is Verdict.RUNNING:
            u = rng.random()
            test.update(Outcome.CHALLENGER_WINS if u < p_win else Outcome.CHAMPION_WINS if u < p_win + p_loss
                        else Outcome.TIE)
        stops.append(test.decided_at)
        right += test.verdict is Verdict.WIN
        wrong += test.verdict is Verdict.LOSS
    return {"experiments": experiments, "budget": budget, "median_queries": int(np.median(stops)),
            "wins": right, "losses": wrong, "undecided": experiments - right - wrong}


def measure(rankers: Rankers, champion: dict[str, list[str]], champion_per_q: dict[str, float], difference: float,
            model: ClickModel, args: argparse.Namespace, rng: np.random.Generator, seed: int) -> dict:
    challenger, signal = rankers.challenger_for(difference)
    per_q = rankers.ndcg(challenger)
    outcomes = interleaving_outcomes(champion, challenger, rankers.qrels, model)
    p_win, p_loss = (float(x) for x in outcomes.mean(axis=0))
    dist_a, dist_b = page_clicks(champion, rankers.qrels, model), page_clicks(challenger, rankers.qrels, model)
    interleaving_n = queries_needed(lambda n, r, g: power_interleaving(p_win, p_loss, n, r, g), args.runs, rng)
    ab = {metric: queries_needed(lambda n, r, g, m=metric: power_ab(dist_a, dist_b, n, r, g, m), args.runs, rng)
          for metric in ("clicks", "click_through")}
    ab_n = min((n for n in ab.values() if n is not None), default=None)
    top_overlap = np.mean([len(set(champion[q][:PAGE]) & set(challenger[q][:PAGE])) / PAGE for q in champion])
    row = {
        "construction_seed": seed,
        "ndcg_difference": difference,
        "champion_ndcg@10": round(float(np.mean(list(champion_per_q.values()))), 4),
        "challenger_ndcg@10": round(float(np.mean(list(per_q.values()))), 4),
        "challenger_signal": round(signal, 4),
        "queries_challenger_better": sum(per_q[q] > v for q, v in champion_per_q.items()),
        "queries_challenger_worse": sum(per_q[q] < v for q, v in champion_per_q.items()),
        "top10_overlap": round(float(top_overlap), 3),
        "interleaving_p_win": round(p_win, 5), "interleaving_p_loss": round(p_loss, 5),
        "ab_clicks_per_query": [round(float(d @ np.arange(PAGE + 1)), 5) for d in (dist_a, dist_b)],
        "ab_click_through": [round(float(1 - d[0]), 5) for d in (dist_a, dist_b)],
        "interleaving_queries": interleaving_n,
        "ab_queries_by_metric": ab,
        "ab_queries": ab_n,
        "ratio_ab_to_interleaving": round(ab_n / interleaving_n, 2) if ab_n and interleaving_n else None,
        "sequential": sequential_runs(p_win, p_loss, args.sequential_experiments,
                                      budget=SEQUENTIAL_BUDGET, seed=seed),
    }
    print(f"construction {seed}, nDCG@10 +{difference}: interleaving {interleaving_n} queries, A/B {ab_n} {ab}, "
          f"ratio {row['ratio_ab_to_interleaving']}", flush=True)
    return row


def summarise(rows: list[dict], differences: list[float]) -> list[dict]:
    """Per difference, the medians over the constructions (a construction's figures swing with its noises)."""
    out = []
    for difference in differences:
        mine = [r for r in rows if r["ndcg_difference"] == difference]
        ratios = [r["ratio_ab_to_interleaving"] for r in mine if r["ratio_ab_to_interleaving"] is not None]
        out.append({
            "ndcg_difference": difference,
            "constructions": len(mine),
            "interleaving_queries": int(np.median([r["interleaving_queries"] or np.inf for r in mine])),
            "ab_queries": int(np.median([r["ab_queries"] or np.inf for r in mine])),
            "ratio_ab_to_interleaving": round(float(np.median(ratios)), 2) if ratios else None,
            "ratio_range": [min(ratios), max(ratios)] if ratios else None,
            "sequential_median_queries": int(np.median([r["sequential"]["median_queries"] for r in mine])),
            "sequential_wrong_decisions": sum(r["sequential"]["losses"] for r in mine),
        })
    return out


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [r["ndcg_difference"] for r in rows]
    ax.plot(xs, [r["interleaving_queries"] for r in rows], "o-", label="team-draft interleaving (sign test)")
    ax.plot(xs, [r["ab_queries"] for r in rows], "s-", label="A/B split (best click metric)")
    ax.plot(xs, [r["sequential_median_queries"] for r in rows], "^--", label="interleaving, sequential test (median)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(xs, [f"{x:g}" for x in xs])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("nDCG@10 difference (challenger - champion)")
    ax.set_ylabel(f"queries to decide (p < {ALPHA}, power {POWER})")
    ax.set_title("SciFact test queries, demo click model")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
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
    rng = np.random.default_rng(args.seed)
    rows = []
    for seed in range(args.seed, args.seed + args.constructions):
        rankers = Rankers(candidate_pools(qrels, doc_ids, random.Random(seed)), qrels, seed)
        champion = rankers.champion()
        champion_per_q = rankers.ndcg(champion)
        for difference in args.differences:
            rows.append(measure(rankers, champion, champion_per_q, difference, model, args, rng, seed))
    summary = summarise(rows, args.differences)

    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "interleaving",
        "dataset": "scifact test qrels (300 queries), constructed rankings",
        "click_model": dataclasses.asdict(model),
        "alpha": ALPHA, "power": POWER, "runs_per_query_count": args.runs, "seed": args.seed,
        "summary": summary,
        "rows": rows,
        "seconds": round(time.perf_counter() - t0, 1),
        "machine": platform.platform(),
    }
    (RESULTS / "interleaving.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(summary, RESULTS / "interleaving.png")
    for row in summary:
        print(f"nDCG@10 +{row['ndcg_difference']}: interleaving {row['interleaving_queries']} queries, "
              f"A/B {row['ab_queries']}, ratio {row['ratio_ab_to_interleaving']} "
              f"(range {row['ratio_range']}), sequential test median {row['sequential_median_queries']}")
    print(f"wrote {RESULTS / 'interleaving.json'} and interleaving.png in {result['seconds']} s")


if __name__ == "__main__":
    main()
