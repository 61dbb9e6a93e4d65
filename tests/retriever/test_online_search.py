"""RetrieverCore.search with a running experiment (real indexes, a stand-in reranker and trainer in-process):
interleaved searches carry teams and the experiment id and are never intervened on; a shadowed search shows
the champion alone while the challenger is measured; a failing challenger stops the experiment, never a search."""

from __future__ import annotations

import asyncio
import shutil

import numpy as np
import pytest

from services.common.config import EndpointSettings, InterventionSettings, Settings
from services.proto.feedrank.v1 import reranker_pb2
from services.retriever.core import RetrieverCore
from services.retriever.domain import SearchQuery
from services.retriever.embedder import DIMENSION
from services.retriever.experiment_watch import ExperimentWatch
from services.retriever.fusion import fuse_by
from services.retriever.online import (
    FALLBACKS,
    SHADOW_FAILURES,
    SHADOW_OVERLAP,
    SHADOW_SCORES,
    OnlineExperiment,
)
from services.retriever.query_adapter import NOTHING, QueryAdapter, ServedVersion
from tests.retriever.conftest import DOCS

CHAMPION, CHALLENGER = "v-champion", "v-challenger"


class Reranker:
    """The champion keeps the fused order; the challenger reverses it (or fails, when told to)."""

    def __init__(self):
        self.challenger_fails = False
        self.asked: list[str] = []
        self.documents: dict[str, list[str]] = {}  # alias asked -> the documents it was asked to rank

    async def rerank(self, request: reranker_pb2.RerankRequest, timeout: float) -> reranker_pb2.RerankResponse:
        self.asked.append(request.model)
        self.documents[request.model] = [d.id for d in request.documents]
        n = len(request.documents)
        if request.model == "challenger":
            if self.challenger_fails:
                raise ConnectionError("challenger gone")
            scores, version = [i / n for i in range(n)], CHALLENGER
        else:
            scores, version = [1 - i / n for i in range(n)], CHAMPION
        return reranker_pb2.RerankResponse(model_version=version, results=[
            reranker_pb2.RerankResult(index=i, id=d.id, score=s)
            for i, (d, s) in enumerate(zip(request.documents, scores))])

    async def close(self) -> None:
        pass


class Impressions:
    def __init__(self):
        self.events = []

    def send(self, event) -> None:
        self.events.append(event)

    async def close(self) -> None:
        pass


class Trainer:
    def __init__(self, experiment: OnlineExperiment):
        self.experiment = experiment
        self.stopped: list[str] = []

    async def running(self, corpus_id: str) -> OnlineExperiment | None:
        return None if self.stopped else self.experiment

    async def stop(self, corpus_id: str, reason: str) -> None:
        self.stopped.append(reason)

    async def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def template(tmp_path_factory, embedder_dir, embedder):
    data = tmp_path_factory.mktemp("online-template")
    shutil.copytree(embedder_dir, data / "models" / "embedder")
    core = RetrieverCore(Settings(data_dir=str(data)), embedder=embedder)
    core.ingest("tiny", DOCS)
    core.close()
    return data


def scenario(template, tmp_path, embedder, experiment: OnlineExperiment, body):
    data = tmp_path / "data"
    shutil.copytree(template, data)
    base = Settings(data_dir=str(data))
    settings = base.replace(
        endpoints=EndpointSettings(reranker="127.0.0.1:1", feedback="127.0.0.1:1", trainer="127.0.0.1:1"),
        reranking=base.reranking.model_copy(update={"reranker_mode": "learning", "tribrid_reranker_topn": 8}),
        interventions=InterventionSettings(share=1.0, kind="top_n_shuffle", top_n=5),  # every logged search
    )
    reranker, impressions, trainer = Reranker(), Impressions(), Trainer(experiment)

    async def run():
        watch = ExperimentWatch(trainer, ttl_s=60, max_failures=3)
        core = RetrieverCore(settings, embedder=embedder, reranker=reranker, impressions=impressions,
                             experiments=watch)
        await watch.refresh("tiny")
        try:
            return await body(core, reranker, impressions, trainer)
        finally:
            await core.aclose()

    return asyncio.run(run())


def search(core, session: str = "s"):
    return core.search(SearchQuery("tiny", "volcano lava eruption", top_k=6, session_id=session))


def test_interleaved_searches_carry_teams_and_are_never_intervened_on(template, tmp_path, embedder):
    experiment = OnlineExperiment("e1", "tiny", CHALLENGER, share=1.0)

    async def body(core, reranker, impressions, trainer):
        outcome = await search(core)
        champion_only = await core.search(SearchQuery("tiny", "volcano lava eruption", top_k=6, model="champion",
                                                      no_intervention=True))
        return outcome, champion_only, reranker.asked, impressions.events

    outcome, champion_only, asked, events = scenario(template, tmp_path, embedder, experiment, body)
    assert outcome.experiment_id == "e1" and sorted(asked[:2]) == ["", "challenger"]
    teams = [h.team for h in outcome.hits]
    assert set(teams) == {"champion", "challenger"} and abs(teams.count("champion") - teams.count("challenger")) <= 1
    assert outcome.intervention is None and [h.rank for h in outcome.hits] == list(range(1, 7))
    # The champion's first pick is its own first result; the challenger's is its own (the reversed head).
    first = {team: next(h.doc_id for h in outcome.hits if h.team == team) for team in ("champion", "challenger")}
    assert first["champion"] == champion_only.hits[0].doc_id
    assert first["challenger"] != first["champion"]
    [impression, _] = events  # a search that names a model is not interleaved
    assert impression.impression.experiment_id == "e1"
    assert [r.team for r in impression.impression.results] == teams
    assert not champion_only.experiment_id and all(not h.team for h in champion_only.hits)


def test_a_shadowed_search_shows_the_champion_alone_and_measures_the_challenger(template, tmp_path, embedder):
    experiment = OnlineExperiment("e2", "tiny", CHALLENGER, share=1.0, shadow=True)
    overlap_before = SHADOW_OVERLAP.labels("tiny")._sum.get()
    count = lambda: sum(s.value for m in SHADOW_SCORES.collect() for s in m.samples  # noqa: E731
                        if s.name.endswith("_count") and s.labels == {"corpus": "tiny", "team": "challenger"})
    scores_before = count()

    async def body(core, reranker, impressions, trainer):
        outcome = await search(core)
        await asyncio.wait(list(core._shadows) or [asyncio.sleep(0)], timeout=5)
        return outcome, reranker.asked

    outcome, asked = scenario(template, tmp_path, embedder, experiment, body)
    assert "challenger" in asked and not outcome.experiment_id and all(not h.team for h in outcome.hits)
    assert count() == scores_before + 8  # the challenger's top scores, observed off the search path
    # The challenger reverses the head: some of the champion's top 8 stay in its top 10 (all of them, here).
    assert SHADOW_OVERLAP.labels("tiny")._sum.get() == overlap_before + 1.0


@pytest.mark.parametrize("shadow", [False, True])
def test_a_failing_challenger_fails_no_search_and_the_experiment_is_stopped(template, tmp_path, embedder, shadow):
    experiment = OnlineExperiment("e3", "tiny", CHALLENGER, share=1.0, shadow=shadow)
    failures_before = SHADOW_FAILURES.labels("tiny", "ConnectionError")._value.get()

    async def body(core, reranker, impressions, trainer):
        reranker.challenger_fails = True
        outcomes = []
        for i in range(5):
            outcomes.append(await search(core, session=f"s{i}"))
            if core._shadows:
                await asyncio.wait(list(core._shadows), timeout=5)
        await asyncio.sleep(0.05)  # the stop call runs in the background
        return outcomes, trainer.stopped

    outcomes, stopped = scenario(template, tmp_path, embedder, experiment, body)
    assert all(o.hits and not o.experiment_id and not o.degraded_reason for o in outcomes)
    [reason] = stopped
    assert f"3 {'shadowed' if shadow else 'interleaved'} searches in a row" in reason
    assert "ConnectionError" in reason and CHALLENGER in reason
    if shadow:
        assert SHADOW_FAILURES.labels("tiny", "ConnectionError")._value.get() == failures_before + 3


class Versions:
    """Stands in for the registry the retriever follows: what each alias's version changes here."""

    def __init__(self, **by_alias: ServedVersion):
        self.by_alias = by_alias

    def for_search(self, model: str, corpus_id: str) -> ServedVersion:
        return self.by_alias.get(model, NOTHING)


LEXICAL_ONLY = {"method": "weighted", "sparse_weight": 1.0, "vector_weight": 0.0}


def test_the_challenger_ranks_its_own_candidates_fused_by_its_learned_fusion(template, tmp_path, embedder):
    """A challenger whose learned fusion differs from the champion's is asked to rerank its own fused head,
    and the merged list can show a document only it retrieved."""
    experiment = OnlineExperiment("e4", "tiny", CHALLENGER, share=1.0)
    query = "volcano lava eruption"

    async def body(core, reranker, impressions, trainer):
        core.adapters = Versions(champion=ServedVersion(CHAMPION, "tiny"),
                                 challenger=ServedVersion(CHALLENGER, "tiny", fusion=LEXICAL_ONLY))
        outcome = await core.search(SearchQuery("tiny", query, top_k=8, session_id="s"))
        configured, _ = core.config.current()
        legs = core.legs(core.corpora.get("tiny"), query, core.settings.retrieval.candidate_k)
        learned = configured.model_copy(update=LEXICAL_ONLY)
        own = [f.doc_id for f in fuse_by(legs.hits, learned, limit=8)]
        champions = [f.doc_id for f in fuse_by(legs.hits, configured, limit=8)]
        return outcome, reranker.documents, own, champions

    outcome, documents, own, champions = scenario(template, tmp_path, embedder, experiment, body)
    assert own != champions  # the two fusions disagree on this query: otherwise the test shows nothing
    assert documents["challenger"] == own and documents[""] == champions
    assert outcome.experiment_id == "e4"
    theirs = [h.doc_id for h in outcome.hits if h.team == "challenger"]
    assert theirs and set(theirs) <= set(own)
    assert theirs[0] == own[-1]  # the stand-in challenger reverses its head: its first pick is its own last
    only_theirs = [h for h in outcome.hits if h.doc_id not in champions]
    # Shown as the challenger's candidates: the store's title, the challenger's score (the stand-in's are > 0
    # below its first document).
    assert only_theirs and all(h.team == "challenger" and h.title and h.rerank_score > 0 for h in only_theirs)


def test_a_challenger_alias_naming_another_version_falls_back_to_the_champion(template, tmp_path, embedder):
    experiment = OnlineExperiment("e5", "tiny", CHALLENGER, share=1.0)
    before = FALLBACKS.labels("tiny", "ChallengerGone")._value.get()

    async def body(core, reranker, impressions, trainer):
        core.adapters = Versions(challenger=ServedVersion("v-other", "tiny", fusion=LEXICAL_ONLY))
        outcomes = [await search(core, session=f"s{i}") for i in range(3)]
        await asyncio.sleep(0.05)  # the stop call runs in the background
        return outcomes, reranker.asked, trainer.stopped

    outcomes, asked, stopped = scenario(template, tmp_path, embedder, experiment, body)
    assert all(o.hits and not o.experiment_id and not o.degraded_reason for o in outcomes)
    assert "challenger" not in asked  # another version's fusion is never ranked for this experiment
    assert FALLBACKS.labels("tiny", "ChallengerGone")._value.get() == before + 3
    [reason] = stopped
    assert "v-other" in reason


def test_a_challenger_with_its_own_query_adapter_ranks_its_own_vector_leg(template, tmp_path, embedder):
    experiment = OnlineExperiment("e6", "tiny", CHALLENGER, share=1.0)
    query = "volcano lava eruption"
    W = 4 * np.random.default_rng(3).standard_normal((DIMENSION, DIMENSION)).astype(np.float32) / DIMENSION**0.5
    adapter = QueryAdapter(CHALLENGER, "tiny", W)

    async def body(core, reranker, impressions, trainer):
        core.adapters = Versions(challenger=ServedVersion(CHALLENGER, "tiny", adapter=adapter))
        await core.search(SearchQuery("tiny", query, top_k=8, session_id="s"))
        configured, _ = core.config.current()
        corpus, depth = core.corpora.get("tiny"), core.settings.retrieval.candidate_k
        legs = core.legs(corpus, query, depth).hits
        adapted = {**legs, "vector": core._searches(corpus, adapter)["vector"](query, depth)}
        own = [f.doc_id for f in fuse_by(adapted, configured, limit=8)]
        champions = [f.doc_id for f in fuse_by(legs, configured, limit=8)]
        return reranker.documents, own, champions

    documents, own, champions = scenario(template, tmp_path, embedder, experiment, body)
    assert own != champions  # the adapter moves the vector leg on this query: otherwise the test shows nothing
    assert documents["challenger"] == own and documents[""] == champions
