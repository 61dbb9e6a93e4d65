"""The click judge: challenger vs champion on held-out sessions' logged clicks, corrected for position bias.

A share of sessions (`training.judge_holdout_share`, by a hash of the session id) is never mined, and neither
is any session of a query first searched in one of them: the judge judges only queries no run learned from,
and drops held-out searches of a query first searched elsewhere (services/trainer/click_log.py, `Holdout`).
For each judged search with a satisfied click (dwell >= `training.mining.dwell_threshold_ms`), each model
reranks the search's query as it would be served, and the clicks are credited where that model would put them:

    IPS-DCG@10(model) = sum over clicked d of  [rank_model(d) <= 10] / log2(1 + rank_model(d))
                                              / max(p(rank_logged(d)), 1 / training.propensity_clip)

With the examination propensities p measured from the interventions (services/trainer/propensity.py)
this is an unbiased estimate of the model's DCG@10 with click-through relevance, up to the clipping
(Joachims, Swaminathan and Schnabel, WSDM 2017; Agarwal et al., "Counterfactual Learning-to-Rank for
Additive Metrics and Deep Models", 2018). Per-search differences go through the gate's paired test.
"""

from __future__ import annotations

import hashlib
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.common.config import Settings
from services.common.durable import write_json_atomic
from services.common.errors import ErrorKind, FeedrankError
from services.events.store import EventStore
from services.trainer import propensity
from services.trainer.click_log import Holdout, LoggedSearch, held_out, logged_searches
from services.trainer.corpus_data import CorpusData, EvalSet, normalize_query
from services.trainer.evaluation import FUSED, Evaluator, paired_test

METRIC = "ips_dcg@10"
CUTOFF = 10


def ips_dcg(ranking: dict[str, int], clicks: list[tuple[str, float]], cutoff: int = CUTOFF) -> float:
    """One search's IPS-DCG of a ranking ({doc: 1-based rank}) for clicks given as (doc, inverse propensity)."""
    total = 0.0
    for doc_id, weight in clicks:
        rank = ranking.get(doc_id, 0)
        if 0 < rank <= cutoff:
            total += weight / math.log2(1 + rank)
    return total


@dataclass(frozen=True)
class HeldOut:
    searches: list[LoggedSearch]  # judged queries' searches with a satisfied click, newest first
    sessions: int  # distinct sessions among them
    judged_queries: int  # queries of the log first searched in a held-out session: the judge's alone
    kept_from_mining: int  # searches outside the held-out sessions that mining skips because their query is judged
    learned_dropped: int  # held-out sessions' searches with a satisfied click whose query was first searched
    # in a mined session: not judged (a model may have learned the query there)


class ClickJudge:
    def __init__(self, settings: Settings, events: EventStore, evaluator: Evaluator):
        self.settings = settings
        self.training = settings.training
        self.events = events
        self.evaluator = evaluator

    def held_out(self, corpus_id: str, until_ms: int | None = None) -> HeldOut:
        """The judged queries' searches (before `until_ms`) with a satisfied click, of the newest
        `judge_max_sessions` sessions, and what the holdout kept from mining and from judging."""
        training = self.training
        logged = logged_searches(self.events, corpus_id, until_ms)
        share = training.judge_holdout_share
        holdout = Holdout.of(((s.timestamp_ms, s.query_id, s.session_id, s.query) for s in logged), share)
        kept: list[LoggedSearch] = []
        sessions: set[str] = set()
        kept_from_mining = learned_dropped = 0
        for search in reversed(logged):
            in_share = held_out(search.session_id, share)
            search.clicks = [c for c in search.clicks if c.dwell_ms >= training.mining.dwell_threshold_ms]
            if not holdout.judged(search.query):
                learned_dropped += bool(in_share and search.clicks)
                continue
            kept_from_mining += not in_share
            if search.session_id not in sessions and training.judge_max_sessions and \
                    len(sessions) >= training.judge_max_sessions:
                continue
            if search.clicks:
                kept.append(search)
                sessions.add(search.session_id)
        return HeldOut(kept, len(sessions), len(holdout.judged_queries), kept_from_mining, learned_dropped)

    def evaluate(self, corpus_id: str, challenger: str, champion: str, *, save: bool = True,
                 until_ms: int | None = None) -> dict[str, Any]:
        """Challenger vs champion (a version id or "fused") on the held-out sessions' clicks (logged before
        `until_ms`: a replay of an earlier decision)."""
        started = time.perf_counter()
        held = self.held_out(corpus_id, until_ms)
        needed = self.training.judge_min_sessions
        if held.sessions < needed:
            raise FeedrankError(
                ErrorKind.FAILED_PRECONDITION,
                f"corpus {corpus_id} has {held.sessions} held-out sessions with a click for the click judge; it needs "
                f"{needed} (training.judge_min_sessions; {self.training.judge_holdout_share:g} of sessions are held "
                f"out, training.judge_holdout_share; {held.learned_dropped} held-out searches were dropped because "
                "their query was first searched in a mined session)",
            )
        measured = propensity.measure(self.settings, self.events, corpus_id)
        if not measured.measured():
            raise FeedrankError(
                ErrorKind.FAILED_PRECONDITION,
                f"corpus {corpus_id} has no measured propensities ({measured.intervened} intervened searches): the "
                "click judge needs interventions (interventions.share > 0, corpus not in interventions.opt_out_corpora)",
            )
        clip = self.training.propensity_clip
        weighted = [[(c.doc_id, 1.0 / max(measured.at(c.rank) or 0.0, 1.0 / clip)) for c in s.clicks]
                    for s in held.searches]
        rankings = self._rankings(corpus_id, held.searches, {FUSED: None, "champion": _version(champion),
                                                             "challenger": _version(challenger)})
        values = {name: np.array([ips_dcg(ranking[_key(s.query)], w) for s, w in zip(held.searches, weighted)])
                  for name, ranking in rankings.items()}
        diffs = values["challenger"] - values["champion"]
        p = paired_test(diffs, self.training.gate.paired_test, self.training.gate.test_samples, self.training.seed)
        record = {
            # "c", not "e": the labelled evaluations' listings (e*.json, nDCG per version) stay theirs.
            "eval_id": time.strftime("c%Y%m%d-%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6],
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "judge": "clicks",
            "corpus_id": corpus_id,
            "eval_set": f"clicks:holdout@{self.training.judge_holdout_share:g}",
            "sessions": held.sessions,
            "searches": len(held.searches),
            "clicks": sum(len(s.clicks) for s in held.searches),
            "judged_queries": held.judged_queries,
            "kept_from_mining": held.kept_from_mining,
            "learned_dropped": held.learned_dropped,
            "until_ms": max(s.timestamp_ms for s in held.searches) + 1,  # replays select the same searches
            "champion": {"version_id": champion},
            "challenger": {"version_id": challenger},
            "metrics": {name: {METRIC: float(v.mean())} for name, v in values.items()},
            "gain": float(diffs.mean()),
            "p_value": p,
            "test": {"kind": self.training.gate.paired_test, "samples": self.training.gate.test_samples, "sided": "one",
                     "wins": int((diffs > 0).sum()), "losses": int((diffs < 0).sum()), "ties": int((diffs == 0).sum())},
            "propensity_clip": clip,
            "propensities": {"ranks": measured.ranks, "propensity": measured.propensity,
                             "intervened": measured.intervened},
            "seconds": round(time.perf_counter() - started, 2),
        }
        if save:
            write_json_atomic(self.evaluator.root / f"{record['eval_id']}.json", record)
        return record

    def _rankings(self, corpus_id: str, searches: list[LoggedSearch],
                  models: dict[str, str | None]) -> dict[str, dict[str, dict[str, int]]]:
        """{model: {query key: {doc: rank as that model serves it}}}, each distinct query ranked once."""
        queries = {_key(s.query): s.query for s in searches}
        data = CorpusData(self.settings, corpus_id)
        try:
            es = EvalSet(corpus_id, "clicks:holdout", queries, {})
            lists, _ = self.evaluator.candidate_lists(data, es)
            out: dict[str, dict[str, dict[str, int]]] = {}
            done: dict[str | None, dict[str, dict[str, int]]] = {}
            for name, version_id in models.items():
                if version_id not in done:
                    run = self.evaluator.model_run(version_id, data, es, lists)
                    done[version_id] = {q: {d: i for i, d in enumerate(sorted(scores, key=scores.get, reverse=True), 1)}
                                        for q, scores in run.items()}
                out[name] = done[version_id]
        finally:
            data.close()
        return out


def _key(query: str) -> str:
    return hashlib.sha256(normalize_query(query).encode()).hexdigest()[:16]


def _version(name: str) -> str | None:
    return None if name in ("", FUSED) else name
