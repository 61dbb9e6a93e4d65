"""The trainer's core: mining, runs, evaluation, the gate, bootstrap and the unattended loop.

The gRPC servicer and the CLI are adapters over this object. Training runs one at a time on a
worker thread (two CPU cores do not train two models faster); `train` returns the run id at once.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from services.common.config import Settings, TrainingSettings
from services.common.errors import ErrorKind, FeedrankError, invalid
from services.engine.manifest import Blend
from services.events.kinds import TEACHING_KINDS
from services.events.store import EventStore
from services.registry.importer import import_bi_encoder
from services.registry.store import Registry, open_registry
from services.retriever.embedder import DIMENSION, packaged_model_dir
from services.retriever.fusion import learned
from services.trainer.candidates import CandidateSource, open_candidates
from services.trainer.click_judge import ClickJudge
from services.trainer.corpus_data import CorpusData, frozen_texts, normalize_query, parse_split
from services.trainer.evaluation import Evaluator
from services.trainer.fusion_learner import learn_from_triplets
from services.trainer.gate import Gate, ModelPublisher
from services.trainer.judges import Judges
from services.trainer.mining import Miner, MiningResult, corpus_triplet_files, load_triplets
from services.trainer.online.experiments import Experiment, ExperimentBook
from services.trainer.online.ledger import Ledger
from services.trainer.online.verdicts import JUDGE as ONLINE_JUDGE
from services.trainer.online.verdicts import ExperimentPublisher, Verdicts
from services.trainer.recipes import recipe
from services.trainer.runs import TERMINAL, RunContext, RunRecord, RunStore, new_run_id, now, owner_id
from services.trainer.training import Cancelled, apply_overrides

log = logging.getLogger(__name__)


class _RunLog(logging.Handler):
    """Copies the worker thread's log records into the run's train.log."""

    def __init__(self, path: Path, thread_id: int):
        super().__init__(logging.INFO)
        self.thread_id = thread_id
        self.stream = path.open("a")
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread_id:
            self.stream.write(self.format(record) + "\n")
            self.stream.flush()

    def close(self) -> None:
        self.stream.close()
        super().close()


class TrainerCore:
    def __init__(self, settings: Settings, *, registry: Registry | None = None,
                 candidates: CandidateSource | None = None, publisher: ModelPublisher | None = None,
                 events: EventStore | None = None, recover_runs: bool = True,
                 experiment_publisher: ExperimentPublisher | None = None):
        self.settings = settings
        self.registry = registry or open_registry(settings.registry_path)
        self.candidates = candidates or open_candidates(settings)
        self._own_events = events is None
        self.events = events or EventStore.open(settings)
        self.runs = RunStore(settings.data_path / "runs")
        self.miner = Miner(settings, self.candidates, self.events)
        self.evaluator = Evaluator(settings, self.registry, self.candidates)
        self.publisher = publisher
        self.gate = Gate(settings, self.registry, self.evaluator, publisher,
                         Judges(settings, self.evaluator, ClickJudge(settings, self.events, self.evaluator)))
        self.experiment_publisher = experiment_publisher
        self.experiments = ExperimentBook(
            settings.data_path / "trainer" / "experiments.json", settings.interleaving,
            on_change=Verdicts(settings, self.registry, self._promote_online, experiment_publisher))
        self.ledger = Ledger(self.experiments, int(settings.interleaving.click_window_s * 1000))
        self._worker = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="train")
        self._cancel: dict[str, threading.Event] = {}
        self._futures: dict[str, concurrent.futures.Future] = {}
        self._stop = threading.Event()
        self._loop: threading.Thread | None = None
        # An offline trainer next to the service (`feedrank train --offline`, the GPU Job) must not mark
        # the service's runs interrupted: only the service recovers runs.
        self.interrupted = self.runs.recover() if recover_runs else []
        if self.interrupted:
            log.warning("runs interrupted by a restart", extra={"fields": {"runs": self.interrupted}})

    # -- mining --------------------------------------------------------------------------------

    def mine(self, corpus_id: str, sources: list[str], golden_path: str = "", qrels_split: str = "",
             limit_per_source: int = 0) -> MiningResult:
        return self.miner.mine(corpus_id, sources, golden_path=golden_path, qrels_split=qrels_split,
                               limit_per_source=limit_per_source)

    # -- runs ----------------------------------------------------------------------------------

    def train(self, corpus_id: str, start_from: str = "champion", triplet_files: list[str] | None = None,
              overrides: dict[str, str] | None = None, kind: str = "train") -> str:
        start_from = start_from or "champion"
        if start_from not in ("champion", "base"):
            raise invalid("start_from", f"must be 'champion' or 'base', not {start_from!r}")
        CorpusData(self.settings, corpus_id).close()  # the corpus must exist
        training = apply_overrides(self.settings.training, overrides or {})
        files = [str(Path(f).resolve()) for f in triplet_files] if triplet_files else \
            [str(p) for p in corpus_triplet_files(self.settings, corpus_id)]
        if not files:
            raise FeedrankError(ErrorKind.FAILED_PRECONDITION, f"no triplets mined for corpus {corpus_id}: run Mine first")
        allowed = (self.settings.data_path / "triplets").resolve()
        for f in files:
            # Admin callers still only name files mining wrote: the RPC must not read arbitrary paths.
            if not Path(f).is_relative_to(allowed):
                raise invalid("triplet_files", f"{f} is not under {allowed}")
            if not Path(f).is_file():
                raise invalid("triplet_files", f"no triplet file {f}")
        run_id = new_run_id()
        self.runs.create(RunRecord(run_id, corpus_id, kind, "queued", now(),
                                   {**training.model_dump(mode="json"), "start_from": start_from}, files,
                                   owner=owner_id()))
        self._cancel[run_id] = threading.Event()
        self._futures[run_id] = self._worker.submit(self._execute, run_id)
        return run_id

    def _execute(self, run_id: str) -> None:
        record = self.runs.get(run_id)
        if record.status != "queued":
            return  # cancelled while it waited
        cancel = self._cancel.setdefault(run_id, threading.Event())
        handler = _RunLog(self.runs.log_path(run_id), threading.get_ident())
        root = logging.getLogger()
        root.addHandler(handler)
        try:
            training = TrainingSettings.model_validate({k: v for k, v in record.settings.items() if k != "start_from"})
            data = CorpusData(self.settings, record.corpus_id)
            try:
                skip = frozen_texts(self.settings, data)
            finally:
                data.close()
            # Mining already skips eval queries; this catches hand-made or older triplet files.
            triplets = [t for t in load_triplets(map(Path, record.triplet_files)) if normalize_query(t.query) not in skip]
            context = RunContext(self.settings, self.registry, self.runs, self.candidates, record, training,
                                 triplets, cancel)
            manifest = recipe(training).run(context)
            self.runs.update(run_id, status="succeeded", version_id=manifest.version_id)
            log.info("run %s succeeded: version %s is the challenger", run_id, manifest.version_id)
        except Cancelled:
            if self._stop.is_set():
                self.runs.update(run_id, status="interrupted", error="the trainer shut down during the run")
            else:
                self.runs.update(run_id, status="cancelled", error="cancelled")
        except Exception as err:  # the run records every failure; the worker thread must survive
            log.exception("run %s failed", run_id)
            self.runs.update(run_id, status="failed", error=str(err))
        finally:
            root.removeHandler(handler)
            handler.close()

    def get_run(self, run_id: str) -> RunRecord:
        return self.runs.get(run_id)

    def list_runs(self, corpus_id: str = "") -> list[RunRecord]:
        return self.runs.list(corpus_id)

    def cancel_run(self, run_id: str) -> RunRecord:
        record = self.runs.get(run_id)
        if record.status in TERMINAL:
            return record
        self._cancel.setdefault(run_id, threading.Event()).set()
        if record.status == "queued":
            return self.runs.update(run_id, status="cancelled", error="cancelled before it started")
        return record

    def wait(self, run_id: str, timeout_s: float | None = None) -> RunRecord:
        future = self._futures.get(run_id)
        if future is not None:
            future.result(timeout=timeout_s)
        return self.runs.get(run_id)

    # -- evaluation and promotion --------------------------------------------------------------

    def evaluate(self, corpus_id: str, challenger: str = "", champion: str = "") -> dict[str, Any]:
        return self.evaluator.evaluate(corpus_id, challenger, champion)

    def promote(self, corpus_id: str, version_id: str = "", force: bool = False) -> dict[str, Any]:
        if not corpus_id:
            raise invalid("corpus_id", "required")
        return self.gate.promote(corpus_id, version_id, force)

    def rollback(self, corpus_id: str) -> dict[str, Any]:
        """Roll back one corpus's champion; an empty corpus id names the global scope (corpus-neutral versions)."""
        return self.gate.rollback(corpus_id)

    def start_experiment(self, corpus_id: str, challenger_version: str = "", share: float | None = None,
                         query_budget: int = 0, shadow: bool = False) -> Experiment:
        """Interleave the corpus's champion with `challenger_version` (default: the challenger alias).

        The retriever asks the reranker for the corpus's challenger alias, so a version named here becomes
        that alias (recorded in the registry's history) once the experiment is accepted."""
        if not corpus_id:
            raise invalid("corpus_id", "required")
        CorpusData(self.settings, corpus_id).close()  # the corpus must exist
        challenger = self.registry.resolve(challenger_version or "challenger", corpus_id)
        champion = self.registry.resolve("champion", corpus_id)  # the corpus's aliases, never another's
        experiment = self.experiments.start(corpus_id, champion or "", challenger or "", share=share,
                                            query_budget=query_budget or None, shadow=shadow)
        if self.registry.resolve("challenger", corpus_id) != experiment.challenger_version:
            try:
                self.registry.update_aliases(corpus_id, {"challenger": experiment.challenger_version},
                                             f"online experiment {experiment.experiment_id}", judge=ONLINE_JUDGE)
            except FeedrankError as err:  # e.g. a version trained for another corpus: no experiment either
                self.experiments.stop(corpus_id, f"{experiment.challenger_version} cannot be its challenger: {err}")
                raise
        return experiment

    def _promote_online(self, experiment: Experiment, reason: str) -> dict[str, Any]:
        return self.gate.promote_decided(experiment.corpus_id, experiment.challenger_version,
                                         experiment.champion_version, reason, judge=ONLINE_JUDGE)

    def consume_feedback(self, events: list) -> None:
        """After each poll of the feedback stream (the event consumer's thread): the experiments' ledger."""
        try:
            self.ledger.consume(events, int(time.time() * 1000))
        except Exception:  # the consumer thread must survive a ledger fault; the events are stored anyway
            log.exception("online experiment ledger failed on a poll")

    def experiment(self, corpus_id: str) -> Experiment:
        if not corpus_id:
            raise invalid("corpus_id", "required")
        return self.experiments.status(corpus_id)

    def stop_experiment(self, corpus_id: str, reason: str = "") -> Experiment:
        if not corpus_id:
            raise invalid("corpus_id", "required")
        return self.experiments.stop(corpus_id, reason or "stopped by an operator")

    def event_stats(self) -> dict[str, Any]:
        by_type: dict[str, int] = {}
        by_corpus: dict[str, int] = {}
        by_day: dict[str, int] = {}
        for row in self.events.stats():
            by_type[row.kind] = by_type.get(row.kind, 0) + row.count
            corpus = row.corpus_id or "(unknown)"
            by_corpus[corpus] = by_corpus.get(corpus, 0) + row.count
            by_day[row.day] = by_day.get(row.day, 0) + row.count
        return {"by_type": by_type, "by_corpus": by_corpus, "by_day": by_day, "total": sum(by_type.values())}

    # -- bootstrap -----------------------------------------------------------------------------

    def bootstrap(self, corpus_id: str, on_run=None) -> dict[str, Any]:
        """Train a v0 with no feedback from `bootstrap_sources`, register it as challenger, run the gate.

        recipe=query-adapter: the adapter learns from the corpus's `train_split` qrels alone (judged
        documents stand in for clicks; answer-selection sets are other corpora and are skipped);
        recipe=cross-encoder: a cross-encoder from the qrels and the answer-selection sets.
        Either way the gate decides whether v0 beats the fused order.
        Cached by corpus, sources and settings: a second call returns the first call's result.
        """
        training = self.settings.training
        data = CorpusData(self.settings, corpus_id)
        try:
            corpus_version = data.version()
        finally:
            data.close()
        key_src = json.dumps([corpus_id, corpus_version, training.model_dump(mode="json")], sort_keys=True)
        key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
        cache = self.settings.data_path / "trainer" / "bootstrap" / f"{corpus_id}-{key}.json"
        if cache.is_file():
            cached = json.loads(cache.read_text())
            try:
                self.registry.manifest(cached["version_id"])
                return {**cached, "cached": True}
            except FeedrankError:
                log.info("cached bootstrap version %s is gone; training again", cached["version_id"])
        sources, missing = self._bootstrap_sources(corpus_id)
        if not sources:
            raise FeedrankError(ErrorKind.FAILED_PRECONDITION, f"bootstrap has no data source for {corpus_id}: "
                                f"{'; '.join(missing)}")
        mined = self.mine(corpus_id, sources, limit_per_source=recipe(training).bootstrap_limit(training))
        if not mined.files:
            raise FeedrankError(ErrorKind.FAILED_PRECONDITION, f"bootstrap found no training data for {corpus_id} "
                                f"(sources {sources}; skipped {mined.skipped})")
        run_id = self.train(corpus_id, "base", mined.files, kind="bootstrap")
        if on_run is not None:
            on_run(run_id)
        record = self.wait(run_id)
        if record.status != "succeeded":
            raise FeedrankError(ErrorKind.INTERNAL, f"bootstrap run {run_id} {record.status}: {record.error}")
        decision = self.promote(corpus_id, record.version_id)
        result = {"corpus_id": corpus_id, "run_id": run_id, "version_id": record.version_id,
                  "mining_run_id": mined.mining_run_id, "triplets": mined.counts, "missing_sources": missing,
                  "decision": decision, "created_at": now()}
        if training.fusion_choice.enabled and training.recipe == "query-adapter":
            result["fusion"] = self.fusion_only(corpus_id, [Path(f) for f in mined.files])
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(result, indent=2))
        return {**result, "cached": False}

    def fusion_only(self, corpus_id: str, triplet_files: list[Path]) -> dict[str, Any]:
        """The fused order alone, fused as the triplets' feedback says, as a version the gate judges.

        An adapter trained on a few labelled queries can rank below its own base vector leg (CoSQA: 0.71
        against 0.75 nDCG@10 on the held-out queries), and then no version of the loop serves the better
        leg. This version changes nothing but the fusion: the base query tower (a zero adapter, which a
        later run warm-starts from), the learned fusion (services/trainer/fusion_learner.py, on every
        triplet query: nothing here was trained on them) and a blend of weight 0 (the served order is that
        fused order). The gate promotes it only over a champion it beats, as it would any challenger.
        """
        training = self.settings.training
        triplets = load_triplets(triplet_files)
        chosen = learn_from_triplets(triplets, corpus_id, self.candidates, self.settings.fusion, training)
        base = packaged_model_dir()
        zero = np.zeros((DIMENSION, DIMENSION), np.float32)
        manifest = import_bi_encoder(
            self.registry, base, base, self.settings.engine, query_max_length=training.adapter.query_max_length,
            doc_max_length=self.settings.retrieval.embedder_max_length, adapter=zero, alias="challenger",
            corpus_id=corpus_id, reason="the fusion learned from the bootstrap's feedback",
            manifest_fields={
                "corpus_id": corpus_id, "base_model": f"{base} (fused order only)",
                "triplet_files": [str(f) for f in triplet_files],
                "metrics": {"fusion_ndcg@10": chosen.ndcg, "configured_fusion_ndcg@10": chosen.configured_ndcg},
                "doc_tower_is_dense_leg": True, "blend": Blend(weight=0.0, depth=training.eval_rerank_depth),
                "fusion": learned(chosen.fusion), "triplets": len(triplets), "extra": {"recipe": "fusion"},
            },
        )
        log.info("fusion-only version %s: %s (fused nDCG@10 %.4f on %d triplets' queries, configured %.4f)",
                 manifest.version_id, learned(chosen.fusion), chosen.ndcg, len(triplets), chosen.configured_ndcg)
        return {"version_id": manifest.version_id, "fusion": learned(chosen.fusion),
                "decision": self.promote(corpus_id, manifest.version_id)}

    def _bootstrap_sources(self, corpus_id: str) -> tuple[list[str], list[str]]:
        """The configured bootstrap sources that exist here, and why the others were left out."""
        training = self.settings.training
        data = CorpusData(self.settings, corpus_id)
        try:
            splits = data.splits()
        finally:
            data.close()
        usable, missing = [], []
        for source in training.bootstrap_sources:
            if source != "qrels" and not recipe(training).learns_other_corpora:
                missing.append(f"{source}: not used by the {training.recipe} recipe (its documents are not in "
                               f"{corpus_id})")
            elif source == "qrels":
                split, _ = parse_split(training.train_split, "training.train_split")
                if split in splits:
                    usable.append(source)
                else:
                    missing.append(f"qrels: {corpus_id} has no qrels/{split}.tsv")
            elif self.miner.answer_set_path(source).is_file():
                usable.append(source)
            else:
                missing.append(f"{source}: no {source}/rerank_train.jsonl under training.answer_sets_dir "
                               f"({training.answer_sets_dir or 'unset'})")
        return usable, missing

    # -- the unattended loop -------------------------------------------------------------------

    def feedback_count(self) -> int:
        """Clicks and ratings: impressions alone (the trainer's own searches included) teach nothing."""
        return sum(self.events.count(kind) for kind in TEACHING_KINDS)

    def cycle(self, corpus_id: str) -> dict[str, Any]:
        """mine (events) -> train (from the champion) -> evaluate + gate. Returns what happened."""
        mined = self.mine(corpus_id, ["events"])
        total = sum(mined.counts.values())
        if total < self.settings.training.gate.min_triplets:
            return {"corpus_id": corpus_id, "mined": total, "skipped": "fewer triplets than training.gate.min_triplets"}
        run_id = self.train(corpus_id, "champion", [*map(str, corpus_triplet_files(self.settings, corpus_id))])
        record = self.wait(run_id)
        if record.status != "succeeded":
            return {"corpus_id": corpus_id, "run_id": run_id, "status": record.status, "error": record.error}
        return {"corpus_id": corpus_id, "run_id": run_id, "decision": self.promote(corpus_id, record.version_id)}

    def start_loop(self) -> None:
        loop = self.settings.loop
        if not loop.every_events and not loop.every_minutes:
            return
        self._loop = threading.Thread(target=self._run_loop, name="trainer-loop", daemon=True)
        self._loop.start()

    def _run_loop(self) -> None:
        loop = self.settings.loop
        state_path = self.settings.data_path / "trainer" / "schedule.json"
        state = json.loads(state_path.read_text()) if state_path.is_file() else {}
        last_count = state.get("events", self.feedback_count())
        last_at = state.get("at", time.time())
        while not self._stop.wait(loop.check_s):
            count = self.feedback_count()
            due_events = loop.every_events and count - last_count >= loop.every_events
            due_time = loop.every_minutes and time.time() - last_at >= loop.every_minutes * 60
            if not (due_events or due_time):
                continue
            corpora = loop.corpora or sorted(
                {r.corpus_id for r in self.events.stats() if r.corpus_id and r.kind in TEACHING_KINDS})
            for corpus_id in corpora:
                try:
                    outcome = self.cycle(corpus_id)
                except FeedrankError as err:
                    outcome = {"corpus_id": corpus_id, "error": str(err)}
                log.info("scheduled cycle", extra={"fields": outcome})
            last_count, last_at = count, time.time()
            state_path.parent.mkdir(parents=True, exist_ok=True)
            state_path.write_text(json.dumps({"events": last_count, "at": last_at}))

    def close(self) -> None:
        self._stop.set()
        for event in self._cancel.values():
            event.set()
        self._worker.shutdown(wait=True, cancel_futures=True)
        if self._loop is not None:
            self._loop.join(5)
        if self.publisher is not None:
            self.publisher.close()
        if self.experiment_publisher is not None:
            self.experiment_publisher.close()
        self.candidates.close()
        if self._own_events:
            self.events.close()
