"""Position bias measured from the log: the examination propensity of each rank, with confidence intervals.

Only the retriever's randomised interventions (services/retriever/interventions.py) are used, because
there the rank a document is shown at is independent of its relevance. Under the position-based model a
result shown at rank r that the ranking put at rank k is clicked with probability p(r) * g(k), where g(k)
is the mean click-through of what rankings put at rank k. Both kinds of intervention fill that table:
top_n_shuffle every (r, k) cell of its top n, rand_pair the cells (1, k), (k, 1) and the diagonal. The
propensities p (p(1) = 1) and the g are fitted jointly to the click counts of every cell by maximum
likelihood (the regression-EM / intervention-harvesting family: Wang et al. WSDM 2018, Agarwal et al.
WSDM 2019), so every click of an intervened search informs every rank, not only the ratio at its own.

Clicks are rare deep down (a few dozen at rank 10 in the demo's 4,000 sessions), so per-rank estimates
alone are off by 20-50% there. The fit therefore penalises the curvature of log p against log rank
(second differences; a power law has none), with the penalty's weight chosen by 5-fold cross-validation
over searches from the held-out likelihood of their clicks: a curve the data contradict (a fold, a step)
gets a small weight and keeps its shape. 95% intervals: bootstrap over intervened searches, refitted with
the chosen weight. Ranks no intervention reached have no estimate.

Stored per corpus as `$FEEDRANK_DATA_DIR/trainer/propensity/<corpus>.json` (what the console shows) with
a plot beside it; read by mining (inverse-propensity weights) and by the click judge (clipped IPS).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from services.common.config import Settings
from services.common.durable import write_json_atomic
from services.events.store import EventStore
from services.trainer.click_log import LoggedSearch, logged_searches

METHOD = ("position-based model fitted to the clicks of randomised interventions (top_n_shuffle, rand_pair) "
          "per (shown rank, ranked rank), curvature of log p over log rank penalised with a weight chosen by "
          "5-fold cross-validation; 95% CI: bootstrap over intervened searches")

# Penalty weights tried by cross-validation: 0 = per-rank maximum likelihood, the largest ~ a power law.
SMOOTHING_GRID = (0.0, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0)
FOLDS = 5
_LOG_FLOOR = -12.0  # log p and log g stay above this: a rank with no click is not -infinity
_PRIOR = 1e-3  # weight of the pull of log g towards the mean click rate (a Gaussian prior, sd ~ 22)
_NEWTON_STEPS = 50


@dataclass(frozen=True)
class Propensities:
    corpus_id: str
    ranks: list[int]  # 1..max_rank
    propensity: list[float | None]  # relative to rank 1; None where no intervention reached the rank
    ci_low: list[float | None]
    ci_high: list[float | None]
    searches: int
    intervened: int
    clicks: int  # clicks in the intervened searches
    method: str = METHOD
    created_at: str = ""
    smoothing: float = 0.0  # the curvature penalty's weight cross-validation chose
    clicks_by_rank: list[int] | None = None  # intervened searches' clicks at each shown rank

    def at(self, rank: int) -> float | None:
        """The propensity of a rank: the deepest estimated rank at or above it stands in for an unestimated one.
        None when no rank below the first was measured."""
        if not self.measured():
            return None
        for value in reversed(self.propensity[: max(rank, 1)]):
            if value is not None:
                return value
        return None

    def measured(self) -> bool:
        return any(v is not None for v in self.propensity[1:])

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class _Cells:
    """Each intervened search's impressions per (shown rank r, ranked rank k) cell, one entry per shown result
    (cell index (r - 1) * K + k - 1), and whether it was clicked."""

    search: np.ndarray  # per entry: the index of its search
    cell: np.ndarray  # per entry: its cell
    clicked: np.ndarray  # per entry: 1.0 when clicked
    searches: int
    ranks: int  # R: shown ranks 1..R were reached by some intervention
    ranked: int  # K: ranked ranks 1..K appear


def _cells(searches: list[LoggedSearch], max_rank: int) -> _Cells:
    entries = []
    for i, s in enumerate(searches):
        clicked = {c.rank for c in s.clicks}
        entries += [(i, r, s.ranked[r - 1], float(r in clicked))
                    for r in range(1, min(len(s.shown), s.intervention_depth, max_rank) + 1)]
    table = np.array(entries, dtype=float).reshape(-1, 4)
    reached, deepest = (int(table[:, 1].max()), int(table[:, 2].max())) if len(table) else (0, 0)
    return _Cells(table[:, 0].astype(int), ((table[:, 1] - 1) * deepest + table[:, 2] - 1).astype(int), table[:, 3],
                  len(searches), reached, deepest)


def _curvature(ranks: int) -> np.ndarray:
    """Second differences of a function of log rank on ranks 1..R (R-2 x R): zero for a power law."""
    x = np.log(np.arange(1, ranks + 1))
    rows = np.zeros((max(ranks - 2, 0), ranks))
    for j in range(1, ranks - 1):
        h1, h2 = x[j] - x[j - 1], x[j + 1] - x[j]
        rows[j - 1, j - 1: j + 2] = np.array([1 / h1, -(1 / h1 + 1 / h2), 1 / h2]) * 2 / (h1 + h2)
    return rows.T @ rows


def _fit(n: np.ndarray, c: np.ndarray, weight: float, penalty: np.ndarray, start: np.ndarray | None = None
         ) -> tuple[np.ndarray, np.ndarray]:
    """(log p over ranks 1..R with log p(1) = 0, log g over ranked ranks 1..K) maximising the Poisson
    likelihood of the click counts c ~ n p(r) g(k) less weight * curvature(log p).

    The objective is concave, so Newton's method with step halving converges in a few steps. A weak pull
    of each log g towards the mean click rate keeps a ranked rank with no click finite."""
    R, K = n.shape
    rate = max(c.sum(), 1.0) / max(n.sum(), 1.0)
    prior = np.full(K, np.log(rate))
    hess_penalty = np.zeros((R - 1 + K, R - 1 + K))
    hess_penalty[: R - 1, : R - 1] = 2 * weight * penalty[1:, 1:]
    hess_penalty[R - 1:, R - 1:] = 2 * _PRIOR * np.eye(K)

    def value(z: np.ndarray) -> float:
        theta, phi = np.concatenate([[0.0], z[: R - 1]]), z[R - 1:]
        eta = theta[:, None] + phi[None, :]
        return float((c * eta).sum() - (n * np.exp(eta)).sum() - weight * theta @ penalty @ theta
                     - _PRIOR * ((phi - prior) ** 2).sum())

    z = start.copy() if start is not None else np.concatenate([-np.log(np.arange(2, R + 1)), prior])
    current = value(z)
    for _ in range(_NEWTON_STEPS):
        theta, phi = np.concatenate([[0.0], z[: R - 1]]), z[R - 1:]
        mu = n * np.exp(theta[:, None] + phi[None, :])
        grad = np.concatenate([(c.sum(axis=1) - mu.sum(axis=1) - 2 * weight * penalty @ theta)[1:],
                               c.sum(axis=0) - mu.sum(axis=0) - 2 * _PRIOR * (phi - prior)])
        hess = np.block([[np.diag(mu.sum(axis=1)[1:]), mu[1:]], [mu[1:].T, np.diag(mu.sum(axis=0))]]) + hess_penalty
        step = np.linalg.solve(hess, grad)
        scale = 1.0
        while scale > 1e-4:
            candidate = np.clip(z + scale * step, _LOG_FLOOR, 2.0)
            if (improved := value(candidate)) >= current:
                break
            scale /= 2
        else:
            break
        z, gain, current = candidate, improved - current, improved
        if gain < 1e-9 * max(abs(current), 1.0):
            break
    return np.concatenate([[0.0], z[: R - 1]]), z


def _tables(cells: _Cells, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(impressions, clicks) per cell (R x K), each search counted `weights[search]` times."""
    size, shape = cells.ranks * cells.ranked, (cells.ranks, cells.ranked)
    w = weights[cells.search]
    return (np.bincount(cells.cell, w, size).reshape(shape),
            np.bincount(cells.cell, w * cells.clicked, size).reshape(shape))


def _choose_smoothing(cells: _Cells, penalty: np.ndarray, rng: np.random.Generator) -> float:
    """The smoothest penalty weight whose fits predict held-out searches' clicks within one standard error of
    the best (5-fold cross-validation with the one-standard-error rule: a rougher curve must earn its noise)."""
    fold = rng.permutation(cells.searches) % FOLDS
    scores = np.zeros((len(SMOOTHING_GRID), FOLDS))
    for f in range(FOLDS):
        train, test = _tables(cells, (fold != f).astype(float)), _tables(cells, (fold == f).astype(float))
        for i, weight in enumerate(SMOOTHING_GRID):
            theta, z = _fit(*train, weight, penalty)
            eta = theta[:, None] + z[cells.ranks - 1:][None, :]
            scores[i, f] = float((test[1] * eta).sum() - (test[0] * np.exp(eta)).sum())
    totals = scores.sum(axis=1)
    best = int(np.argmax(totals))
    # The standard error of each weight's total shortfall from the best, from its paired per-fold differences.
    shortfall_se = np.std(scores[best] - scores, axis=1, ddof=1) * np.sqrt(FOLDS)
    return max(w for w, total, se in zip(SMOOTHING_GRID, totals, shortfall_se) if total >= totals[best] - se)


def estimate(corpus_id: str, searches: list[LoggedSearch], max_rank: int, bootstrap: int, seed: int) -> Propensities:
    intervened = [s for s in searches if s.intervention and s.intervention_depth >= 2]
    cells = _cells(intervened, max_rank)
    R = cells.ranks
    nothing: list[float | None] = [None] * max_rank
    clicks_by_rank = [sum(1 for s in intervened for c in s.clicks if c.rank == r) for r in range(1, max_rank + 1)]
    summary = dict(searches=len(searches), intervened=len(intervened),
                   clicks=sum(len(s.clicks) for s in intervened), created_at=_now(), clicks_by_rank=clicks_by_rank)
    if R < 2 or not cells.clicked[cells.cell < cells.ranked].any():  # no click at rank 1: nothing is relative to it
        return Propensities(corpus_id, list(range(1, max_rank + 1)), nothing, nothing, nothing, **summary)
    rng = np.random.default_rng(seed)
    penalty = _curvature(R)
    weight = _choose_smoothing(cells, penalty, rng)
    theta, z = _fit(*_tables(cells, np.ones(len(intervened))), weight, penalty)
    draws = np.array([
        _fit(*_tables(cells, rng.multinomial(len(intervened), np.full(len(intervened), 1 / len(intervened)))
                      .astype(float)), weight, penalty, start=z)[0]
        for _ in range(bootstrap)
    ])
    low, high = np.percentile(np.exp(draws), [2.5, 97.5], axis=0)

    def values(a: np.ndarray) -> list[float | None]:
        return [round(float(x), 5) for x in a] + [None] * (max_rank - R)

    return Propensities(corpus_id, list(range(1, max_rank + 1)), values(np.exp(theta)), values(low), values(high),
                        smoothing=weight, **summary)


def store_dir(settings: Settings) -> Path:
    return settings.data_path / "trainer" / "propensity"


def measure(settings: Settings, events: EventStore, corpus_id: str) -> Propensities:
    """Estimate the corpus's propensities from its whole log now, store them (JSON and plot) and return them."""
    training = settings.training
    estimated = estimate(corpus_id, logged_searches(events, corpus_id), training.propensity_max_rank,
                         training.propensity_bootstrap, training.seed)
    path = store_dir(settings) / f"{corpus_id}.json"
    write_json_atomic(path, estimated.as_dict())
    plot(path.with_suffix(".png"), estimated)
    return estimated


def load(settings: Settings, corpus_id: str) -> Propensities | None:
    """The corpus's last measured propensities, or None when none were measured."""
    try:
        return Propensities(**json.loads((store_dir(settings) / f"{corpus_id}.json").read_text()))
    except FileNotFoundError:
        return None


def plot(path: Path, estimated: Propensities, truth: dict[int, float] | None = None) -> None:
    """Propensity per rank with its 95% interval; `truth` (a simulator's) drawn beside it when known."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    ranks = np.array(estimated.ranks)
    nan = lambda xs: np.array([np.nan if x is None else x for x in xs], dtype=float)  # noqa: E731
    ax.fill_between(ranks, nan(estimated.ci_low), nan(estimated.ci_high), color="#2a7ab9", alpha=0.2,
                    label="95% interval")
    ax.plot(ranks, nan(estimated.propensity), "o-", color="#2a7ab9", label="estimated")
    if truth:
        known = sorted(r for r in truth if r <= ranks.max())
        ax.plot(known, [truth[r] for r in known], "s--", color="#d62728", label="simulator's true examination")
    ax.set_xlabel("rank")
    ax.set_ylabel("propensity (relative to rank 1)")
    ax.set_title(f"position bias of {estimated.corpus_id}: {estimated.searches} searches, "
                 f"{estimated.intervened} intervened, {estimated.clicks} clicks", fontsize=9)
    ax.set_ylim(0, 1.1)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
