"""Simulated users: search through the real Retriever API, click and rate through the real Feedback API.

The click model is position-based with a cascade: a user examines rank r with probability
(1 / r) ** examination_decay, clicks an examined relevant result with `click_relevant`, an examined
non-relevant one with `click_noise`, and stops after a satisfying click with `stop_after_relevant`.
Relevance comes from the qrels of the queries simulated (train queries only). Thumbs follow some clicks,
inverted with probability `wrong_thumbs` (noise).

By default every user behaves alike. A heterogeneous `Population` (demo.population) gives each user a click
propensity and a patience of their own and each query an intent, for the variance real traffic has.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
import uuid
from collections.abc import Callable
import dataclasses
from dataclasses import dataclass, field

from services.client import Click, Feedrank, Rating, Retry, SearchResults
from services.common.config import PopulationSettings
from services.common.errors import FeedrankError


@dataclass(frozen=True)
class ClickModel:
    examination_decay: float = 1.0
    click_relevant: float = 0.9
    click_noise: float = 0.05
    stop_after_relevant: float = 0.7
    thumbs_rate: float = 0.3
    wrong_thumbs: float = 0.0
    seed: int = 7
    stop_after_noise: float = 0.0

    @classmethod
    def noisy(cls, share: float, seed: int = 7) -> ClickModel:
        """`share` of clicks random and of thumbs wrong (the issue's "30% noisy feedback")."""
        return cls(click_noise=max(0.05, share), wrong_thumbs=share, seed=seed)

    def examination(self, rank: int) -> float:
        """Probability that the user looks at the result at `rank` (1-based), if still browsing."""
        return (1.0 / rank) ** self.examination_decay

    def click(self, relevant: bool) -> float:
        """Probability of a click on an examined result."""
        return self.click_relevant if relevant else self.click_noise

    def stop(self, relevant: bool) -> float:
        """Probability that the user stops browsing after clicking a result."""
        return self.stop_after_relevant if relevant else self.stop_after_noise


# Per-query intent: the navigational and informational cascade click models of Hofmann, Whiteson and
# de Rijke's online learning-to-rank simulations (reused in Schuth et al.'s multileaving studies), the two
# ends of their graded tables (relevant = the top grade, not relevant = grade 0).
INTENTS = {
    "navigational": {"click_relevant": 0.95, "click_noise": 0.05, "stop_after_relevant": 0.9,
                     "stop_after_noise": 0.2},
    "informational": {"click_relevant": 0.9, "click_noise": 0.4, "stop_after_relevant": 0.5,
                      "stop_after_noise": 0.1},
}


@dataclass(frozen=True)
class SimulatedUser:
    propensity: float  # a factor on every click probability
    examination_decay: float  # patience: examines rank r with probability (1/r)^decay
    searches: int = 1  # how many searches this user makes


class Population:
    """Heterogeneous users and queries (PopulationSettings documents each distribution and why it was chosen).

    A user's click probabilities are the query's intent's, times the user's propensity (at most 1); their
    examination decay is their own. Thumbs keep `base`'s rates."""

    def __init__(self, settings: PopulationSettings, base: ClickModel):
        self.settings = settings
        self.base = base

    def intent(self, query_id: str) -> str:
        """Fixed per query (a seeded hash), so every user asking it wants the same kind of answer."""
        digest = hashlib.blake2b(f"{self.settings.seed}\x00{query_id}".encode(), digest_size=8).digest()
        navigational = int.from_bytes(digest, "big") / 2**64 < self.settings.navigational_share
        return "navigational" if navigational else "informational"

    def user(self, rng: random.Random) -> SimulatedUser:
        s = self.settings
        propensity = rng.gammavariate(s.propensity_shape, 1 / s.propensity_shape)
        decay = math.exp(rng.uniform(math.log(s.decay_min), math.log(s.decay_max)))
        return SimulatedUser(propensity, decay, self.searches(rng.random()))

    def searches(self, u: float) -> int:
        """The geometric number of searches with mean `queries_per_user`, at uniform quantile `u`."""
        stop = 1 / self.settings.queries_per_user  # the chance that a search is the user's last
        return 1 if stop >= 1 else 1 + int(math.log(1 - u) / math.log(1 - stop))

    def behaviour(self, user: SimulatedUser, query_id: str) -> ClickModel:
        intent = INTENTS[self.intent(query_id)]
        scaled = {k: min(1.0, v * user.propensity) if k.startswith("click") else v for k, v in intent.items()}
        return dataclasses.replace(self.base, examination_decay=user.examination_decay, **scaled)


@dataclass
class SimulationStats:
    sessions: int = 0
    searches_failed: int = 0
    feedback_failed: int = 0
    clicks: int = 0
    ratings: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    model_versions: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


class UserSimulator:
    def __init__(
        self, retriever_target: str, feedback_target: str, corpus_id: str, queries: dict[str, str],
        qrels: dict[str, dict[str, int]], model: ClickModel, *, top_k: int = 10, timeout_s: float = 30.0,
        population: Population | None = None,
    ):
        self.corpus_id = corpus_id
        self.query_ids = sorted(q for q in qrels if q in queries)
        if not self.query_ids:
            raise ValueError("no query has both a text and qrels to simulate with")
        self.queries = queries
        self.qrels = qrels
        self.model = model
        self.top_k = top_k
        self.timeout_s = timeout_s
        self.rng = random.Random(model.seed)
        self.population = population
        self._user: SimulatedUser | None = None
        self._searches_left = 0
        # No retries: a call that fails is counted, as a user would see it.
        self.client = Feedrank(retriever_target, feedback_target, timeout_s=timeout_s, retry=Retry(attempts=1),
                               source="simulator")

    def close(self) -> None:
        self.client.close()

    def run(self, sessions: int, stats: SimulationStats | None = None,
            on_session: Callable[[SimulationStats], None] | None = None) -> SimulationStats:
        stats = stats or SimulationStats()
        for _ in range(sessions):
            self.session(stats)
            if on_session:
                on_session(stats)
        return stats

    def session(self, stats: SimulationStats) -> None:
        qid = self.rng.choice(self.query_ids)
        session_id = uuid.uuid4().hex[:12]
        stats.sessions += 1
        t0 = time.perf_counter()
        try:
            response = self.client.search(self.corpus_id, self.queries[qid], top_k=self.top_k, session_id=session_id)
        except FeedrankError as err:
            stats.searches_failed += 1
            stats.errors.append(f"search {err.kind.name}: {err}")
            return
        stats.latencies_ms.append((time.perf_counter() - t0) * 1000)
        stats.model_versions[response.model_version] = stats.model_versions.get(response.model_version, 0) + 1
        events = self._behave(qid, response, self._behaviour(qid))
        if not events:
            return
        try:
            response.feedback(*events)
        except FeedrankError as err:
            stats.feedback_failed += 1
            stats.errors.append(f"feedback {err.kind.name}: {err}")
            return
        stats.clicks += sum(1 for e in events if isinstance(e, Click))
        stats.ratings += sum(1 for e in events if isinstance(e, Rating))

    def _behaviour(self, qid: str) -> ClickModel:
        """The click model of whoever asks `qid`: a population's user makes their searches, then the next one
        comes."""
        if self.population is None:
            return self.model
        if self._searches_left == 0:
            self._user = self.population.user(self.rng)
            self._searches_left = self._user.searches
        self._searches_left -= 1
        return self.population.behaviour(self._user, qid)

    def _behave(self, qid: str, response: SearchResults, m: ClickModel) -> list[Click | Rating]:
        rng = self.rng
        relevant = self.qrels.get(qid, {})
        events: list[Click | Rating] = []
        for result in response.hits:
            if rng.random() > m.examination(result.rank):
                continue
            is_relevant = relevant.get(result.doc_id, 0) > 0
            if rng.random() >= m.click(is_relevant):
                continue
            dwell = rng.randint(30_000, 180_000) if is_relevant else rng.randint(1_000, 8_000)
            events.append(Click(result.doc_id, dwell))
            if rng.random() < m.thumbs_rate:
                happy = is_relevant != (rng.random() < m.wrong_thumbs)
                events.append(Rating(result.doc_id, 5 if happy else 1))
            # A draw only where one was drawn before stop_after_noise existed: seeded runs replay as before.
            if (is_relevant or m.stop_after_noise) and rng.random() < m.stop(is_relevant):
                break
        return events
