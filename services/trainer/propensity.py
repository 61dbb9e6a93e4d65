"""Position bias measured from the log: the examination propensity of each rank, with confidence intervals.

Only the retriever's randomised interventions (services/retriever/interventions.py) are used, because
there the document a user sees at a rank is independent of its relevance; each kind has its ratio
estimator (Joachims, Swaminathan and Schnabel, "Unbiased Learning-to-Rank with Biased Feedback", WSDM 2017):

- top_n_shuffle: every document of the top D is equally likely at every rank, so
  p(r) / p(1) = clicks at rank r / clicks at rank 1, over the shuffled searches with D >= r.
- rand_pair (rank 1 swapped with a random rank k): with a = relevance of the result ranked 1 and b of
  the one ranked k, a swap-k search clicks rank k at rate p(k) a and rank 1 at p(1) b; a search shown as
  ranked clicks rank 1 at p(1) a and rank k at p(k) b. So
  p(k) / p(1) = (CTR_swap(k) + CTR_ranked(k)) / (CTR_ranked(1) + CTR_swap(1)).

Where both kinds were logged, a rank's estimate is their average weighted by intervened searches. The
95% intervals come from a bootstrap over searches. Ranks no intervention reached have no estimate.

Stored per corpus as `$FEEDRANK_DATA_DIR/trainer/propensity/<corpus>.json` (what the console shows) with
a plot beside it; read by mining (inverse-propensity weights) and by the click judge (clipped IPS).
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from services.common.config import Settings
from services.common.durable import write_json_atomic
from services.events.store import EventStore
from services.trainer.click_log import LoggedSearch, logged_searches

METHOD = ("ratio estimators over randomised interventions (top_n_shuffle; rand_pair against searches shown as "
          "ranked), Joachims et al. 2017; 95% CI: bootstrap over searches")


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


def _ratios(weights: np.ndarray, clicks: np.ndarray, shuffled: np.ndarray, swapped: np.ndarray,
            control: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(propensity per rank, searches behind it) for each row of `weights` (B x searches).

    clicks: searches x ranks (1 = clicked at that shown rank); shuffled: searches x ranks (1 = a shuffled
    search whose shuffle reached the rank); swapped: searches x ranks (1 at rank k of a rand_pair swap-k search);
    control: searches x ranks (1 = shown as ranked and the rank was shown)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        top = clicks[:, :1]
        shuffle_n = weights @ shuffled
        shuffle = (weights @ (shuffled * clicks)) / (weights @ (shuffled * top))
        n_swap, n_control = weights @ swapped, weights @ control
        numerator = (weights @ (swapped * clicks)) / n_swap + (weights @ (control * clicks)) / n_control
        denominator = (weights @ (control * top)) / n_control + (weights @ (swapped * top)) / n_swap
        pair = numerator / denominator
        pair_n = np.where(n_control > 0, n_swap, 0.0)
        shuffle_n = np.where(np.isfinite(shuffle), shuffle_n, 0.0)
        pair_n = np.where(np.isfinite(pair), pair_n, 0.0)
        total = shuffle_n + pair_n
        combined = (np.nan_to_num(shuffle) * shuffle_n + np.nan_to_num(pair) * pair_n) / total
    combined[:, 0] = 1.0
    total[:, 0] = np.maximum(total[:, 0], 1.0)
    return np.where(total > 0, combined, np.nan), total


def _matrices(searches: list[LoggedSearch], max_rank: int) -> tuple[np.ndarray, ...]:
    n = len(searches)
    clicks, shuffled, swapped, control = (np.zeros((n, max_rank)) for _ in range(4))
    for i, s in enumerate(searches):
        for c in s.clicks:
            if c.rank <= max_rank:
                clicks[i, c.rank - 1] = 1.0
        shown = min(len(s.shown), max_rank)
        if s.intervention == "top_n_shuffle":
            shuffled[i, : min(shown, s.intervention_depth)] = 1.0
        elif s.intervention == "rand_pair" and 1 in s.ranked:
            k = s.ranked.index(1) + 1  # where the result ranked first was shown
            if 1 < k <= max_rank:
                swapped[i, k - 1] = 1.0
        elif not s.intervention:
            control[i, :shown] = 1.0
    return clicks, shuffled, swapped, control


def estimate(corpus_id: str, searches: list[LoggedSearch], max_rank: int, bootstrap: int, seed: int) -> Propensities:
    clicks, shuffled, swapped, control = _matrices(searches, max_rank)
    n = len(searches)
    intervened = [s for s in searches if s.intervention]
    point, _ = _ratios(np.ones((1, n)), clicks, shuffled, swapped, control)
    rng = np.random.default_rng(seed)
    draws = np.vstack([
        _ratios(rng.multinomial(n, np.full(n, 1.0 / n), size=min(bootstrap, 10)).astype(float), clicks, shuffled,
                swapped, control)[0]
        for _ in range(0, bootstrap, 10)
    ]) if n else np.full((1, max_rank), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # ranks no intervention reached: all-NaN columns
        low, high = np.nanpercentile(draws, [2.5, 97.5], axis=0)

    def values(a: np.ndarray) -> list[float | None]:
        return [None if not np.isfinite(x) else round(float(x), 5) for x in a]

    return Propensities(corpus_id, list(range(1, max_rank + 1)), values(point[0]), values(low), values(high), n,
                        len(intervened), sum(len(s.clicks) for s in intervened), created_at=_now())


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
