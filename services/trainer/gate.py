"""The promotion gate, rollback, and the `ModelPublished` event.

A challenger becomes champion only when
  1. it was trained on at least `min_triplets` triplets,
  2. it beats the current champion (the fused order when there is none) by more than `min_gain`, with
     the paired test's p below `max_p`, by the corpus's judge (services/trainer/judges.py): nDCG@10 on the
     frozen evaluation set, or the held-out sessions' position-corrected clicks,
  3. and, when `guard_corpus` is set, it loses no more than `guard_tolerance` nDCG@10 there.
Every decision, pass or fail, is appended with its numbers to `$FEEDRANK_DATA_DIR/trainer/decisions.jsonl`.

Aliases are the corpus's own (services/registry/store.py): the challenger is compared with the
champion serving that corpus (its own, else the global corpus-neutral one, else the fused order), and
a promotion or rollback changes that corpus's champion and `previous` only. The corpus also names the
evaluation set and the Kafka key. Rollback replays the corpus's alias history to find the champion
before the current one, so two rollbacks in a row go back two versions.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

from prometheus_client import Counter

from services.common.config import KafkaSettings, Settings
from services.common.errors import ErrorKind, FeedrankError, invalid
from services.kafka.connection import TopicPublisher
from services.proto.feedrank.v1 import feedback_pb2
from services.registry.store import ROLLBACK_REASON, Registry, champion_lineage, check_scope, scope_name
from services.trainer.evaluation import FUSED, Evaluator
from services.trainer.judges import Judges

log = logging.getLogger(__name__)

GATE_DECISIONS = Counter("feedrank_gate_decisions_total", "Promotion decisions", ["outcome"])


class ModelPublisher:
    """Sends `feedrank.v1.ModelPublished` to `kafka.topics.models`, keyed by corpus id (or `global`)."""

    def __init__(self, kafka: KafkaSettings):
        self._topic = TopicPublisher(kafka, kafka.topics.models)

    def publish(self, version_id: str, alias: str, digest: str, corpus_id: str, timeout_s: float = 15.0) -> None:
        message = feedback_pb2.ModelPublished(
            version_id=version_id, alias=alias, manifest_sha256=digest, corpus_id=corpus_id,
            timestamp_ms=int(time.time() * 1000),
        )
        self._topic.send(corpus_id or "global", message, timeout_s)

    def close(self) -> None:
        self._topic.close()


class Gate:
    def __init__(self, settings: Settings, registry: Registry, evaluator: Evaluator, publisher: ModelPublisher | None,
                 judges: Judges):
        self.settings = settings
        self.judges = judges
        self.training = settings.training
        self.registry = registry
        self.evaluator = evaluator
        self.publisher = publisher
        self.decisions = settings.data_path / "trainer" / "decisions.jsonl"
        self._lock = threading.Lock()  # one promotion at a time

    def promote(self, corpus_id: str, version_id: str = "", force: bool = False) -> dict[str, Any]:
        with self._lock:
            return self._promote(corpus_id, version_id, force)

    def _promote(self, corpus_id: str, version_id: str, force: bool) -> dict[str, Any]:
        check_scope(corpus_id)
        candidate = self.registry.resolve(version_id or "challenger", corpus_id)
        if not candidate:
            raise FeedrankError(ErrorKind.FAILED_PRECONDITION,
                                f"no challenger to promote for corpus {corpus_id}: train a run first")
        manifest = self.registry.manifest(candidate)
        if manifest.corpus_id not in ("", corpus_id):
            raise invalid("version_id", f"{candidate} was trained for corpus {manifest.corpus_id!r}, not {corpus_id!r}")
        champion = self.registry.resolve("champion", corpus_id)
        numbers: dict[str, float] = {"triplets": float(manifest.triplets)}
        base = {"corpus_id": corpus_id, "version_id": candidate, "champion_before": champion or FUSED}
        if candidate == champion:
            return self._record(base, False, champion, f"{candidate} is already the champion", numbers)
        if force:
            return self._flip(base, candidate, corpus_id, "forced (gate skipped)", numbers, judge="forced")
        if numbers["triplets"] < self.training.gate.min_triplets:
            return self._record(base, False, champion, f"trained on {numbers['triplets']:.0f} triplets, fewer than "
                                f"min_triplets={self.training.gate.min_triplets}", numbers)
        verdict = self.judges.verdict(corpus_id, candidate, champion or FUSED)
        gain, p = verdict.gain, verdict.p_value
        numbers.update(verdict.numbers)
        base.update({"judge": verdict.judge, "eval_id": verdict.eval_id})
        if verdict.beside:
            base["beside"] = verdict.beside
        failures = []
        if not gain > self.training.gate.min_gain:
            failures.append(f"{verdict.metric} gain {gain:+.4f} is not above min_gain={self.training.gate.min_gain}")
        if not p < self.training.gate.max_p:
            failures.append(f"p={p:.4f} is not below max_p={self.training.gate.max_p}")
        guard = self.training.gate.guard_corpus
        if guard and guard != corpus_id and not failures:
            guard_result = self.evaluator.evaluate(guard, challenger=candidate, champion=champion or FUSED)
            numbers["guard_delta"] = guard_result["ndcg_gain"]
            base["guard_eval_id"] = guard_result["eval_id"]
            if guard_result["ndcg_gain"] < -self.training.gate.guard_tolerance:
                failures.append(f"guard corpus {guard} loses {-guard_result['ndcg_gain']:.4f} nDCG@10, more than "
                                f"guard_tolerance={self.training.gate.guard_tolerance}")
        if failures:
            return self._record(base, False, champion, "; ".join(failures), numbers)
        reason = f"{verdict.judge} judge: gain {gain:+.4f} {verdict.metric} (p={p:.4f}) over {champion or FUSED}"
        return self._flip(base, candidate, corpus_id, reason, numbers, judge=verdict.judge)

    def promote_decided(self, corpus_id: str, version_id: str, against: str | None, reason: str,
                        judge: str) -> dict[str, Any]:
        """Promote on a verdict reached outside the gate (an online experiment's win over `against`), recorded
        like any promotion; refused when the champion is no longer the one the verdict was reached against."""
        check_scope(corpus_id)
        with self._lock:
            champion = self.registry.resolve("champion", corpus_id)
            base = {"corpus_id": corpus_id, "version_id": version_id, "champion_before": champion or FUSED,
                    "judge": judge}
            if champion != (against or None):
                return self._record(base, False, champion, f"the champion changed from {against or FUSED} to "
                                    f"{champion or FUSED} since the verdict ({reason})", {})
            return self._flip(base, version_id, corpus_id, reason, {}, judge=judge)

    def rollback(self, corpus_id: str) -> dict[str, Any]:
        """Back to the corpus's champion before the current one (`corpus_id` "" is the global scope)."""
        check_scope(corpus_id)
        with self._lock:
            lineage = champion_lineage(self.registry.history(corpus_id))
            current = self.registry.aliases(corpus_id).get("champion")
            if len(lineage) < 2 or current is None:
                raise FeedrankError(ErrorKind.FAILED_PRECONDITION,
                                    f"no earlier champion of {scope_name(corpus_id)} to roll back to")
            previous = lineage[-2]
            self.registry.update_aliases(
                corpus_id, {"champion": previous, "previous": lineage[-3] if len(lineage) > 2 else None},
                f"{ROLLBACK_REASON} from {current}", judge="rollback")
            numbers: dict[str, float] = {}
            published = self._publish(previous, corpus_id, numbers)
            served = self.registry.resolve("champion", corpus_id)  # with none of its own: the global one, or fused
            reason = f"rolled back from {current} to {previous or FUSED}" + \
                (f" (served by the global champion {served})" if served != previous else "") + published
            return self._record({"corpus_id": corpus_id, "version_id": previous or FUSED, "champion_before": current,
                                 "action": "rollback"}, True, served, reason, numbers)

    # -- helpers -------------------------------------------------------------------------------

    def _flip(self, base: dict, candidate: str, corpus_id: str, reason: str, numbers: dict[str, float],
              judge: str) -> dict[str, Any]:
        # `previous` is the corpus's own champion before this one; a global fallback was never the corpus's.
        own = self.registry.aliases(corpus_id).get("champion")
        self.registry.update_aliases(corpus_id, {"champion": candidate, "previous": own},
                                     f"promote ({corpus_id}): {reason}", judge=judge)
        return self._record(base, True, candidate, reason + self._publish(candidate, corpus_id, numbers), numbers)

    def _publish(self, version_id: str | None, corpus_id: str, numbers: dict[str, float]) -> str:
        """Publish the new champion; the reranker's registry watch still catches it if Kafka is down."""
        if self.publisher is None:
            numbers["published"] = 0.0
            return "; not published (no broker configured)"
        try:
            digest = self.registry.manifest_digest(version_id) if version_id else ""
            self.publisher.publish(version_id or "", "champion", digest, corpus_id)
            numbers["published"] = 1.0
            return ""
        except FeedrankError as err:
            log.warning("model-published event not sent: %s", err)
            numbers["published"] = 0.0
            return f"; event not published ({err}); the reranker's registry watch still picks it up"

    def _record(self, base: dict, promoted: bool, champion: str | None, reason: str,
                numbers: dict[str, float]) -> dict[str, Any]:
        decision = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **base, "promoted": promoted,
                    "champion": champion or FUSED, "reason": reason, "numbers": numbers,
                    "gate": {**{k: getattr(self.training.gate, k) for k in
                                ("min_triplets", "min_gain", "max_p", "guard_corpus", "guard_tolerance")},
                             "judge": self.training.judge}}
        self.decisions.parent.mkdir(parents=True, exist_ok=True)
        with self.decisions.open("a") as fh:
            fh.write(json.dumps(decision) + "\n")
        log.info("gate decision", extra={"fields": {"promoted": promoted, "reason": reason}})
        GATE_DECISIONS.labels("promoted" if promoted else "refused").inc()
        return decision


def read_decisions(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []
