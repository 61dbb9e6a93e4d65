"""`feedrank demo` / `make demo`: the whole learning loop on a real benchmark, measured on unseen queries.

dataset -> ingest -> services up -> v0 bootstrap (labels of a share of the train queries) through the gate
-> test metrics (bm25, dense, fused, +v0)
-> simulated users on the other train queries (gRPC Search + Feedback) -> Kafka -> trainer event store
-> mine -> train -> online experiment (the users' searches interleave the learned version with the champion
   until the sequential test decides) -> evaluate vs champion on held-out train queries -> gate -> hot-swap
   under load -> test metrics again (no training step ever saw the test queries) -> table, JSON, Markdown, PNG,
   and whether the online verdict agrees with the test queries'.

With `demo.judge=clicks` (`make demo JUDGE=clicks`) the trainer gets no labels at all: it ingests a copy of
the corpus without queries or qrels, v0 is the fused order, the users' clicks train the challenger and the
click judge (held-out sessions, IPS over the propensities measured from shuffled searches) decides. Only
this process reads qrels: the simulated users' relevance and the final report's test split.

Everything runs on the embedded default as real processes on loopback. A rerun on the same data dir
resumes: ingest skips unchanged documents, the bootstrap is cached, events and versions are kept.
"""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from rich.console import Console

from services.common.channels import open_channel
from services.common.config import DemoSettings, Settings, validated
from services.common.errors import ErrorKind, FeedrankError
from services.common.progress import progress, status
from services.demo import report
from services.demo.measure import RankingMeter
from services.demo.simulate import ClickModel, Population, SimulationStats, UserSimulator
from services.devstack.stack import LocalStack
from services.events.kinds import TEACHING_KINDS
from services.ir import beir
from services.proto.feedrank.v1 import reranker_pb2, reranker_pb2_grpc, trainer_pb2, trainer_pb2_grpc
from services.retriever.core import open_offline
from services.retriever.ingest import count_lines
from services.trainer.core import TrainerCore
from services.trainer.corpus_data import CorpusData, train_queries
from services.trainer.gate import read_decisions
from services.trainer import propensity as position_bias

console = Console()


@contextmanager
def _started(stack: LocalStack) -> Iterator[LocalStack]:
    """The stack, started under a progress status (it takes tens of seconds on a small machine), stopped after."""
    with status(console, "starting the broker and the services"):
        stack.start()
    try:
        yield stack
    finally:
        stack.stop()


@dataclass
class DemoOutcome:
    rows: dict[str, dict] = field(default_factory=dict)
    versions: list[dict] = field(default_factory=list)
    training_loss: list[dict] = field(default_factory=list)
    decisions: list[dict] = field(default_factory=list)
    simulation: dict = field(default_factory=dict)
    swap: dict = field(default_factory=dict)
    judging: list[dict] = field(default_factory=list)  # each gate decision: its judge, and the click judge beside
    propensities: dict = field(default_factory=dict)  # measured vs the simulator's true examination
    online: dict = field(default_factory=dict)  # the online experiment's verdict, and the test queries' beside it
    paths: dict[str, str] = field(default_factory=dict)


def subset_dataset(source: Path, dest: Path, max_docs: int, seed: int) -> Path:
    """A BEIR copy with at most `max_docs` documents: every judged document kept, the rest sampled."""
    marker = dest / ".subset.json"
    if marker.is_file() and json.loads(marker.read_text()) == {"source": str(source), "max_docs": max_docs}:
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    judged = {d for split in beir.splits(source) for rel in beir.load_qrels(source, split).values() for d in rel}
    docs = list(beir.iter_corpus(source))
    keep = {d.id for d in docs if d.id in judged}
    others = [d.id for d in docs if d.id not in judged]
    random.Random(seed).shuffle(others)
    keep |= set(others[: max(0, max_docs - len(keep))])
    with (dest / "corpus.jsonl").open("w") as out:
        for d in docs:
            if d.id in keep:
                out.write(json.dumps({"_id": d.id, "title": d.title, "text": d.text}) + "\n")
    (dest / "queries.jsonl").write_text((source / "queries.jsonl").read_text())
    (dest / "qrels").mkdir(exist_ok=True)
    for split in beir.splits(source):
        (dest / "qrels" / f"{split}.tsv").write_text((source / "qrels" / f"{split}.tsv").read_text())
    marker.write_text(json.dumps({"source": str(source), "max_docs": max_docs}))
    return dest


def unlabelled_copy(source: Path, dest: Path) -> Path:
    """The corpus alone (no queries, no qrels): what the trainer of the click-judged loop is given."""
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / "corpus.jsonl"
    if not target.is_file() or target.stat().st_size != (source / "corpus.jsonl").stat().st_size:
        shutil.copyfile(source / "corpus.jsonl", target)
    return dest


class Demo:
    def __init__(self, settings: Settings, dataset: Path, *, quick: bool, noise: float | None = None,
                 judge: str | None = None):
        self.settings = settings
        overrides = {k: v for k, v in (("noise", noise), ("judge", judge)) if v is not None}
        self.demo: DemoSettings = validated("demo", DemoSettings, settings.demo, overrides)
        self.quick = quick
        self.noise = self.demo.noise
        self.by_clicks = self.demo.judge == "clicks"
        self.source = Path(dataset).resolve()
        beir.check_dataset(self.source)
        # Its own corpus id: a corpus ingested with qrels elsewhere in the data dir must not lend them to the trainer.
        self.corpus_id = self.source.name + ("-quick" if quick else "") + ("-clicks" if self.by_clicks else "")
        self.data_dir = settings.data_path
        self.out_dir = self.data_dir / "demo" / self.corpus_id
        self.users_split = self._users_split()
        self.outcome = DemoOutcome()
        self._trainer_stub: trainer_pb2_grpc.TrainerStub | None = None  # one channel, once the stack is up
        self.v0: str | None = None  # the bootstrap version (none with demo.bootstrap off)
        self.learned = ""  # the feedback run's version

    def _users_split(self) -> str:
        """The split simulated users ask; the reported split must be another one."""
        available = beir.splits(self.source)
        wanted = self.demo.train_split
        candidates = ["train", "dev"] if wanted == "auto" else [wanted]
        for split in candidates:
            if split in available and split != self.demo.test_split:
                return split
        raise FeedrankError(
            ErrorKind.INVALID_ARGUMENT,
            f"{self.source.name} has qrels splits {available}: the demo needs one for simulated users "
            f"({' or '.join(candidates)}) besides the reported {self.demo.test_split!r} split",
            "dataset",
        )

    # -- the flow, top to bottom ---------------------------------------------------------------

    def run(self) -> DemoOutcome:
        dataset = self._dataset()
        self._ingest(unlabelled_copy(dataset, self.data_dir / "datasets" / f"{self.corpus_id}-unlabelled")
                     if self.by_clicks else dataset)
        queries = beir.load_queries(dataset)
        test = beir.load_qrels(dataset, self.demo.test_split)
        with _started(LocalStack(self.data_dir, env=self._service_env())) as stack:
            self.stack = stack
            self._bootstrap()
            meter = RankingMeter(stack.target("retriever"), self.corpus_id, queries, test,
                                 endpoints=stack.endpoints, admin_token=stack.admin_token)
            try:
                self._measure_baselines(meter)
                asked, labelled = self._simulation_queries(queries)
                stats = self._simulate_and_learn(asked, queries)
                self._measure_learned(meter)
                self._record_judging()
                self._online_agreement()
            finally:
                meter.close()
        self.outcome.simulation = {
            "sessions": stats.sessions, "clicks": stats.clicks, "ratings": stats.ratings,
            "failed_searches": stats.searches_failed, "failed_feedback": stats.feedback_failed,
            "errors": stats.errors[:10], "noise": self.noise,
            "queries_asked": len(asked), "queries_labelled_for_v0": len(labelled),
        }
        self._write_report()
        return self.outcome

    def _dataset(self) -> Path:
        if not self.quick:
            return self.source
        return subset_dataset(self.source, self.data_dir / "datasets" / self.corpus_id, self.demo.quick_max_docs,
                              self.settings.training.seed)

    def _ingest(self, dataset: Path) -> None:
        total = count_lines(dataset / "corpus.jsonl")
        with open_offline(self.settings) as core, progress(console) as bar:
            task = bar.add_task(f"ingest {self.corpus_id} (unchanged documents are skipped)", total=total)
            report_ = core.ingest_beir(self.corpus_id, dataset, progress=lambda n: bar.advance(task, n))
        console.print(f"corpus {self.corpus_id}: {report_.documents} documents "
                      f"({report_.added} added, {report_.unchanged} unchanged)")

    def _loop_settings(self) -> Settings:
        """The settings every part of the loop runs with: the services (through their environment) and
        the in-process bootstrap alike, so the gate always evaluates on the held-out train queries."""
        s, d = self.settings, self.demo
        return s.replace(
            reranking=s.reranking.model_copy(update={"reranker_mode": "learning", "tribrid_reranker_topn": d.rerank_topn}),
            training=s.training.model_copy(update={"eval_split": f"{self.users_split}@{d.eval_share:g}",
                                                   "train_split": self._labelled_split(),
                                                   "eval_rerank_depth": d.rerank_topn}),
            engine=s.engine.model_copy(update={"watch_interval_s": 1.0}),
        )

    def _labelled_split(self) -> str:
        share = self.demo.labelled_share
        return self.users_split if share >= 1 else f"{self.users_split}@{share:g}"

    def _service_env(self) -> dict[str, str]:
        loop = self._loop_settings()
        # The online step: the retriever learns of the experiment within half a second, a query is credited two
        # seconds after it was shown (simulated users click at once), and a busy small machine's slower
        # challenger is waited for rather than counted as failing (the demo decides; it does not time).
        online = {"FEEDRANK_INTERLEAVING__WATCH_TTL_S": "0.5", "FEEDRANK_INTERLEAVING__CLICK_WINDOW_S": "2",
                  "FEEDRANK_INTERLEAVING__CHALLENGER_TIMEOUT_S": "5"}
        # Shuffled searches measure the position bias (both judges: the click judge also runs beside the labels).
        interventions = {"FEEDRANK_INTERVENTIONS__SHARE": f"{self.demo.intervention_share:g}",
                         "FEEDRANK_INTERVENTIONS__KIND": "top_n_shuffle", "FEEDRANK_INTERVENTIONS__TOP_N": "20"}
        if self.by_clicks:  # no split, no golden file: the trainer is told of no labels
            return {
                "FEEDRANK_RERANKING__RERANKER_MODE": loop.reranking.reranker_mode,
                "FEEDRANK_RERANKING__TRIBRID_RERANKER_TOPN": str(loop.reranking.tribrid_reranker_topn),
                "FEEDRANK_TRAINING__EVAL_RERANK_DEPTH": str(loop.training.eval_rerank_depth),
                "FEEDRANK_TRAINING__JUDGE": "clicks",
                "FEEDRANK_TRAINING__SEED": str(loop.training.seed),
                "FEEDRANK_ENGINE__WATCH_INTERVAL_S": str(loop.engine.watch_interval_s),
                "FEEDRANK_LOG_LEVEL": "WARNING", **interventions, **online,
            }
        return {**interventions, **online,
            "FEEDRANK_RERANKING__RERANKER_MODE": loop.reranking.reranker_mode,
            "FEEDRANK_RERANKING__TRIBRID_RERANKER_TOPN": str(loop.reranking.tribrid_reranker_topn),
            "FEEDRANK_TRAINING__EVAL_RERANK_DEPTH": str(loop.training.eval_rerank_depth),
            "FEEDRANK_TRAINING__EVAL_SPLIT": loop.training.eval_split,
            "FEEDRANK_TRAINING__TRAIN_SPLIT": loop.training.train_split,
            "FEEDRANK_TRAINING__SEED": str(loop.training.seed),
            "FEEDRANK_ENGINE__WATCH_INTERVAL_S": str(loop.engine.watch_interval_s),
            "FEEDRANK_LOG_LEVEL": "WARNING",
        }

    def _trainer(self) -> trainer_pb2_grpc.TrainerStub:
        if self._trainer_stub is None:
            channel = open_channel(self.stack.target("trainer"), self.stack.endpoints, token=self.stack.admin_token)
            self._trainer_stub = trainer_pb2_grpc.TrainerStub(channel)
        return self._trainer_stub

    def _bootstrap(self) -> None:
        """v0 without feedback (cached across runs); the gate decides whether it replaces the fused order."""
        if not self.demo.bootstrap or self.by_clicks:
            return
        loop = self._loop_settings()
        core = TrainerCore(loop.replace(endpoints=loop.endpoints.model_copy(
            update={"retriever": self.stack.target("retriever")})))
        try:
            with status(console, "bootstrap v0 (no feedback; cached after the first run)"):
                result = core.bootstrap(self.corpus_id)
        finally:
            core.close()
        decision = result["decision"]
        self.outcome.decisions.append({"step": "bootstrap", **decision})
        self.v0 = result["version_id"]
        self._record_loss("bootstrap", result["run_id"])
        console.print(f"v0 {self.v0}: {'promoted' if decision.get('promoted') else 'kept out'} "
                      f"({decision.get('reason', '')})")
        if "fusion" in result:  # the fused order alone under the fusion learned from the same labels
            fusion = result["fusion"]
            self.outcome.decisions.append({"step": "bootstrap (fusion only)", **fusion["decision"],
                                           "fusion": fusion["fusion"]})
            console.print(f"fusion only {fusion['version_id']} {fusion['fusion']}: "
                          f"{'promoted' if fusion['decision'].get('promoted') else 'kept out'} "
                          f"({fusion['decision'].get('reason', '')})")

    def _measure_baselines(self, meter: RankingMeter) -> None:
        with progress(console) as bar:
            task = bar.add_task("test queries: bm25, dense, fused", total=len(meter.queries))
            legs = meter.legs(progress=lambda: bar.advance(task))
            self.outcome.rows.update(legs.rows)
            self._version("fused order", "none", self.outcome.rows["fused"])
            if self.v0:
                task = bar.add_task("test queries: fused + v0", total=len(meter.queries))
                row, _, version = meter.served(self.v0, progress=lambda: bar.advance(task))
                self.outcome.rows["fused+v0"] = row
                promoted = any(d.get("promoted") for d in self.outcome.decisions if d["step"] == "bootstrap")
                self._version("v0 (bootstrap)", version, row, promoted)

    def _simulation_queries(self, queries: dict[str, str]) -> tuple[dict[str, dict[str, int]], set[str]]:
        """(qrels of the queries users ask, the queries whose labels the bootstrap learned from).

        Users ask the users' split minus the trainer's held-out evaluation queries and, unless
        labelled_share is 1, minus the labelled ones: they bring queries v0 never saw. With the click judge
        there is no holdout and no labelled share: users ask every query of the split (their relevance is
        the simulated world's, read here, never by the trainer)."""
        if self.by_clicks:
            qrels = beir.load_qrels(self._dataset(), self.users_split)
            return {q: rel for q, rel in sorted(qrels.items()) if q in queries and any(g > 0 for g in rel.values())}, set()

        settings = self._loop_settings()
        data = CorpusData(settings, self.corpus_id)
        try:
            minable, _ = train_queries(settings, data, self.users_split)
            labelled, _ = train_queries(settings, data, settings.training.train_split)
        finally:
            data.close()
        asked = set(minable) - (set() if self.demo.labelled_share >= 1 else set(labelled))
        return {q: rel for q, rel in minable.items() if q in asked and q in queries}, set(labelled)

    def _simulate_and_learn(self, train_qrels: dict[str, dict[str, int]], queries: dict[str, str]) -> SimulationStats:
        if self.quick:
            sessions = self.demo.quick_click_sessions if self.by_clicks else self.demo.quick_sessions
        else:
            sessions = self.demo.sessions
        model = ClickModel.noisy(self.noise, self.settings.training.seed) if self.noise else ClickModel(
            seed=self.settings.training.seed)
        if self.by_clicks:
            # Position-based users (no stop after a satisfying click) on the top 20: their examination
            # probability per rank is exactly the model's, the truth the measured propensities are set beside.
            model = dataclasses.replace(model, stop_after_relevant=0.0)
        self.click_model = model
        population = self.demo.population
        simulator = UserSimulator(self.stack.target("retriever"), self.stack.target("feedback"), self.corpus_id,
                                  queries, train_qrels, model, top_k=20 if self.by_clicks else 10,
                                  population=(Population(population, model)
                                              if population.kind == "heterogeneous" else None))
        stats = SimulationStats()
        already = self._feedback_events()  # a resumed run finds earlier sessions' events in the store
        try:
            with progress(console) as bar:
                task = bar.add_task(f"simulated users (noise {self.noise:.0%})", total=sessions)
                simulator.run(sessions, stats, on_session=lambda s: bar.advance(task))
            self._wait_for_events(already + stats.clicks + stats.ratings)
            with LoadDuringSwap(simulator, stats):
                self._learn()
        finally:
            simulator.close()
        return stats

    def _feedback_events(self) -> int:
        by_type = self._trainer().EventStats(trainer_pb2.EventStatsRequest(), timeout=30).by_type
        return sum(by_type.get(kind, 0) for kind in TEACHING_KINDS)

    def _wait_for_events(self, wanted: int, timeout_s: float = 300) -> None:
        deadline = time.monotonic() + timeout_s
        with status(console, f"waiting for the clicks and ratings to reach the trainer through Kafka ({wanted} in all)"):
            while time.monotonic() < deadline:
                if self._feedback_events() >= wanted:
                    return
                time.sleep(1)
        raise FeedrankError(ErrorKind.DEADLINE_EXCEEDED, f"events did not reach the trainer in {timeout_s:.0f}s")

    def _learn(self) -> None:
        trainer = self._trainer()
        with status(console, "mining triplets from the events"):
            mined = trainer.Mine(trainer_pb2.MineRequest(corpus_id=self.corpus_id, sources=["events"]), timeout=600)
        console.print(f"mined {dict(mined.triplets_by_source)} triplets from the events")
        run_id = trainer.Train(trainer_pb2.TrainRequest(corpus_id=self.corpus_id, start_from="champion"),
                               timeout=60).run_id
        self._record_loss("feedback", run_id)
        run = trainer.GetRun(trainer_pb2.GetRunRequest(run_id=run_id), timeout=30)
        if run.status != trainer_pb2.RUN_STATUS_SUCCEEDED:
            raise FeedrankError(ErrorKind.INTERNAL, f"training run {run_id} ended {trainer_pb2.RunStatus.Name(run.status)}: {run.error}")
        self._decide_online(run.version_id)
        held_out = "held-out sessions' clicks" if self.by_clicks else "held-out evaluation queries"
        with status(console, f"gate: challenger vs champion on the {held_out}"):
            decision = trainer.Promote(trainer_pb2.PromoteRequest(corpus_id=self.corpus_id, version_id=run.version_id),
                                       timeout=1800)
        self.outcome.decisions.append({"step": "feedback", "version_id": run.version_id, "promoted": decision.promoted,
                                       "reason": decision.reason, **dict(decision.numbers)})
        console.print(f"gate: {'PROMOTED' if decision.promoted else 'refused'} {run.version_id}: {decision.reason}")
        self.learned = run.version_id
        if decision.promoted:
            self._wait_for_swap(run.version_id)

    def _decide_online(self, version_id: str, timeout_s: float = 1800) -> None:
        """Interleave the learned version with the champion on every simulated search (the users keep searching
        on LoadDuringSwap's thread) until the sequential test decides or the query budget runs out."""
        budget = self.demo.quick_online_queries if self.quick else self.demo.online_queries
        if not budget:
            return
        trainer = self._trainer()
        # Searches a challenger not yet loaded would fall back to the champion and count as its failures.
        self._wait_for_swap(version_id, alias="challenger")
        experiment = trainer.StartExperiment(trainer_pb2.StartExperimentRequest(
            corpus_id=self.corpus_id, challenger_version=version_id, share=1.0, query_budget=budget), timeout=60)
        request = trainer_pb2.GetExperimentRequest(corpus_id=self.corpus_id)
        deadline, counted, moved = time.monotonic() + timeout_s, -1, time.monotonic()
        with status(console, f"online: the users' searches interleave {version_id} with the champion "
                             f"(budget {budget} queries)"):
            while (current := trainer.GetExperiment(request, timeout=30)).state == "running":
                if current.wins + current.losses + current.ties != counted:
                    counted, moved = current.wins + current.losses + current.ties, time.monotonic()
                # Never hang the demo: a budget that is not being spent, or a deadline, ends it.
                why = f"the demo waited {timeout_s:.0f}s" if time.monotonic() > deadline else \
                    "no interleaved query was credited in 120 s" if time.monotonic() - moved > 120 else ""
                if why:
                    current = trainer.StopExperiment(trainer_pb2.StopExperimentRequest(
                        corpus_id=self.corpus_id, reason=why), timeout=30)
                    break
                time.sleep(1)
        queries = current.wins + current.losses + current.ties
        self.outcome.online = {"experiment_id": experiment.experiment_id, "state": current.state,
                               "champion_version": current.champion_version, "challenger_version": version_id,
                               "queries": queries, "wins": current.wins, "losses": current.losses,
                               "ties": current.ties, "p_value": current.p_value, "budget": budget,
                               "reason": current.reason}
        console.print(f"online: {current.state} for {version_id} after {queries} interleaved queries "
                      f"({current.wins} wins, {current.losses} losses, {current.ties} ties, p = {current.p_value:.3g})")

    def _online_agreement(self) -> None:
        """The online verdict beside the test queries' (nDCG@10 of the learned version vs the champion it faced)."""
        online = self.outcome.online
        if not online:
            return
        rows = self.outcome.rows
        learned = rows.get("refused by the gate") or rows["fused+learned"]
        champion = online["champion_version"]
        faced = rows["fused"] if not champion else rows.get("fused+v0") if champion == self.v0 else None
        if faced is None:  # a champion the demo did not measure on the test queries
            console.print(f"online verdict {online['state']}; its champion {champion} was not measured on the test "
                          "queries")
            return
        delta = learned["ndcg@10"] - faced["ndcg@10"]
        online["test_ndcg_delta"] = delta
        verdict = {"win": delta > 0, "loss": delta < 0}.get(online["state"])
        online["agrees"] = verdict
        said = "no online verdict to compare" if verdict is None else \
            ("agrees" if verdict else "disagrees")
        console.print(f"online verdict {online['state']} after {online['queries']} queries; the test queries say "
                      f"{delta:+.4f} nDCG@10 for the learned version: {said}")

    def _record_loss(self, step: str, run_id: str) -> None:
        """The run's loss per step, for the report's plot; follows a running run until it ends."""
        points = []
        stream = self._trainer().StreamRunMetrics(trainer_pb2.StreamRunMetricsRequest(run_id=run_id), timeout=3600)
        with progress(console) as bar:
            task = bar.add_task(f"training run {run_id}", total=None)
            for metric in stream:
                if metric.name == "max_steps":
                    bar.update(task, total=metric.value)
                elif metric.name == "loss":
                    points.append({"step": metric.step, "value": metric.value})
                    bar.update(task, completed=metric.step, description=f"training run {run_id}: loss {metric.value:.4f}")
        self.outcome.training_loss.append({"step": step, "run_id": run_id, "points": points})

    def _wait_for_swap(self, version_id: str, timeout_s: float = 120, alias: str = "champion") -> None:
        channel = grpc.insecure_channel(self.stack.target("reranker"))
        stub = reranker_pb2_grpc.RerankerStub(channel)
        started = time.monotonic()
        with status(console, f"waiting for the reranker to hot-swap the new {alias}"):
            while time.monotonic() - started < timeout_s:
                info = stub.GetInfo(reranker_pb2.GetRerankerInfoRequest(), timeout=10)
                served = info.corpus_aliases[self.corpus_id].aliases if self.corpus_id in info.corpus_aliases else {}
                if served.get(alias) == version_id:
                    if alias == "champion":
                        self.outcome.swap = {"version_id": version_id, "swap_count": info.swap_count,
                                             "seconds": round(time.monotonic() - started, 2)}
                    channel.close()
                    return
                time.sleep(0.5)
        channel.close()
        raise FeedrankError(ErrorKind.DEADLINE_EXCEEDED, f"the reranker did not swap to {version_id}")

    def _measure_learned(self, meter: RankingMeter) -> None:
        """What users get after the loop: the champion the gate left in place, and the run's own version."""
        with progress(console) as bar:
            task = bar.add_task("test queries: fused + champion after learning", total=len(meter.queries))
            row, _, served = meter.served("champion", progress=lambda: bar.advance(task))
        self.outcome.rows["fused+learned"] = {**row, "version_id": served}
        promoted = any(d.get("promoted") for d in self.outcome.decisions if d["step"] == "feedback")
        if promoted:
            self._version("learned (champion)", served, row, True)
            return
        with progress(console) as bar:
            task = bar.add_task("test queries: the refused version", total=len(meter.queries))
            refused, _, version = meter.served(self.learned, progress=lambda: bar.advance(task))
        self.outcome.rows["refused by the gate"] = {**refused, "version_id": version}
        self._version("learned (refused)", version, refused, False)

    def _record_judging(self) -> None:
        """Which judge made each gate decision, the click judge's verdict beside the labelled one, and the
        propensities the trainer measured set beside the simulated users' true examination probabilities."""
        for d in read_decisions(self.data_dir / "trainer" / "decisions.jsonl"):
            if d.get("corpus_id") == self.corpus_id and d.get("judge"):
                self.outcome.judging.append({k: d.get(k) for k in ("version_id", "promoted", "judge", "numbers",
                                                                     "beside", "reason")})
        measured = position_bias.load(self.settings, self.corpus_id)
        if measured is not None and measured.measured():
            truth = {r: self.click_model.examination(r) / self.click_model.examination(1) for r in measured.ranks}
            self.outcome.propensities = {**measured.as_dict(), "true": [truth[r] for r in measured.ranks],
                                         "stop_after_relevant": self.click_model.stop_after_relevant}

    def _version(self, label: str, version: str, row: dict, promoted: bool | None = None) -> None:
        self.outcome.versions.append({"label": label, "version_id": version, "ndcg@10": row["ndcg@10"],
                                      "promoted": promoted})

    def _write_report(self) -> None:
        title = f"{self.corpus_id}: {self.demo.test_split} queries (never trained on)"
        report.print_table(self.outcome.rows, title, console)
        payload = {"corpus_id": self.corpus_id, "quick": self.quick, "rows": self.outcome.rows,
                   "versions": self.outcome.versions, "training_loss": self.outcome.training_loss,
                   "decisions": self.outcome.decisions, "simulation": self.outcome.simulation,
                   "swap": self.outcome.swap, "judge": self.demo.judge, "judging": self.outcome.judging,
                   "agreement": report.agreement(self.outcome.judging),
                   "propensities": self.outcome.propensities, "online": self.outcome.online,
                   "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        paths = report.write(self.out_dir, payload, self.outcome.rows, title)
        if self.outcome.propensities:
            paths.update(report.write_propensities(self.out_dir, self.outcome.propensities, console))
        if self.outcome.judging:
            report.print_agreement(self.outcome.judging, console)
        self.outcome.paths = {k: str(v) for k, v in paths.items()}
        console.print("wrote " + ", ".join(self.outcome.paths.values()))


class LoadDuringSwap:
    """Keeps simulated users searching (and giving feedback) while training, gating and the swap happen."""

    def __init__(self, simulator: UserSimulator, stats: SimulationStats):
        self.simulator = simulator
        self.stats = stats
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load-during-swap", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.simulator.session(self.stats)

    def __enter__(self) -> LoadDuringSwap:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
