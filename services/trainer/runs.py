"""Training runs on disk, so their state survives the process: `$FEEDRANK_DATA_DIR/runs/<run_id>/`.

  run.json       the record (status, settings, data, metrics, version), replaced atomically
  metrics.jsonl  one line per metric as it is written (a stream can start late and replay it)
  train.log      the run's log
  model/         the trained Hugging Face weights (kept: later runs fine-tune from them)

A trainer that starts finds runs left `queued` or `running` by a previous process and marks them
`interrupted`: nothing is running them any more.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import Gauge

from services.common.config import Settings, TrainingSettings
from services.common.errors import invalid, not_found
from services.registry.store import Registry
from services.trainer.candidates import CandidateSource
from services.trainer.mining import Triplet

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "interrupted")
TERMINAL = frozenset({"succeeded", "failed", "cancelled", "interrupted"})


@dataclass
class RunRecord:
    run_id: str
    corpus_id: str
    kind: str  # "train" or "bootstrap"
    status: str
    created_at: str
    settings: dict[str, Any]
    triplet_files: list[str]
    started_at: str = ""
    finished_at: str = ""
    error: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    version_id: str = ""
    base_model: str = ""
    owner: str = ""  # "<host>:<pid>" of the process that queued it (restart recovery)
    data: dict[str, Any] = field(default_factory=dict)  # triplet counts by source, dev/train sizes

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunRecord:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


# The latest value of each metric of the run in progress (loss, eval_ndcg@10, ...); runs keep every value on disk.
TRAINING_METRIC = Gauge("feedrank_training_metric", "Latest training metric of the current run", ["name"])


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_alive(owner: str) -> bool:
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


def new_run_id() -> str:
    return time.strftime("r%Y%m%d-%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class RunStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def dir(self, run_id: str) -> Path:
        # Run ids are ASCII and short (r<date>-<time>-<hex>): anything else is the caller's mistake.
        if not run_id or len(run_id) > 64 or not run_id.isascii() or not run_id.replace("-", "").isalnum():
            raise invalid("run_id", f"not a run id: {run_id!r}")
        return self.root / run_id

    def create(self, record: RunRecord) -> RunRecord:
        folder = self.dir(record.run_id)
        folder.mkdir(parents=True, exist_ok=False)
        self._write(record)
        self.metric(record.run_id, 0, 0.0, "status", 0.0, record.status)
        return record

    def get(self, run_id: str) -> RunRecord:
        path = self.dir(run_id) / "run.json"
        try:
            return RunRecord.from_json(json.loads(path.read_text()))
        except FileNotFoundError as err:
            raise not_found(f"unknown run {run_id!r}", "run_id") from err

    def list(self, corpus_id: str = "") -> list[RunRecord]:
        out = []
        for path in sorted(self.root.glob("*/run.json")):
            try:
                record = RunRecord.from_json(json.loads(path.read_text()))
            except (OSError, ValueError, TypeError):
                continue  # a half-written folder from a crash before its first record
            if not corpus_id or record.corpus_id == corpus_id:
                out.append(record)
        return sorted(out, key=lambda r: r.created_at)

    def update(self, run_id: str, **changes: Any) -> RunRecord:
        with self._lock:
            record = self.get(run_id)
            old_status = record.status
            for key, value in changes.items():
                setattr(record, key, value)
            if record.status in TERMINAL and not record.finished_at:
                record.finished_at = now()
            self._write(record)
        if record.status != old_status:
            self.metric(run_id, 0, 0.0, "status", float(STATUSES.index(record.status)), record.status)
        return record

    def metric(self, run_id: str, step: int, epoch: float, name: str, value: float, status: str) -> None:
        TRAINING_METRIC.labels(name).set(value)
        line = json.dumps({"step": step, "epoch": epoch, "name": name, "value": value, "status": status, "at": now()})
        with (self.dir(run_id) / "metrics.jsonl").open("a") as fh:
            fh.write(line + "\n")

    def metrics_path(self, run_id: str) -> Path:
        return self.dir(run_id) / "metrics.jsonl"

    def log_path(self, run_id: str) -> Path:
        return self.dir(run_id) / "train.log"

    def model_dir(self, run_id: str) -> Path:
        return self.dir(run_id) / "model"

    def recover(self) -> list[str]:
        """Mark runs a previous process left queued or running as interrupted.

        A run queued by another live process on this host (an offline `feedrank model bootstrap`
        next to the service) is left alone; one whose owner had this very pid is a previous
        incarnation of this process (containers restart as the same pid).
        """
        marked = []
        for record in self.list():
            if record.status in ("queued", "running") and not _owner_alive(record.owner):
                self.update(record.run_id, status="interrupted",
                            error=f"the trainer restarted while the run was {record.status}")
                marked.append(record.run_id)
        return marked

    def _write(self, record: RunRecord) -> None:
        path = self.dir(record.run_id) / "run.json"
        tmp = path.with_name(f".run.{uuid.uuid4().hex[:8]}.tmp")
        with tmp.open("w") as fh:
            json.dump(asdict(record), fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)


def diff(a: RunRecord, b: RunRecord) -> dict[str, dict[str, tuple[Any, Any]]]:
    """Settings, data and metrics of two runs side by side (only where they differ, for settings)."""
    def side(x: dict, y: dict, only_changed: bool) -> dict[str, tuple[Any, Any]]:
        keys = sorted(set(x) | set(y))
        return {k: (x.get(k), y.get(k)) for k in keys if not only_changed or x.get(k) != y.get(k)}

    return {
        "settings": side(a.settings, b.settings, True),
        "data": side({**a.data, "base_model": a.base_model, "files": ", ".join(Path(f).name for f in a.triplet_files)},
                     {**b.data, "base_model": b.base_model, "files": ", ".join(Path(f).name for f in b.triplet_files)},
                     False),
        "metrics": side(a.metrics, b.metrics, False),
        "run": side({"status": a.status, "version_id": a.version_id, "created_at": a.created_at},
                    {"status": b.status, "version_id": b.version_id, "created_at": b.created_at}, False),
    }


@dataclass(frozen=True)
class RunContext:
    """What a recipe's run (services/trainer/recipes.py) reads and writes."""

    settings: Settings
    registry: Registry
    runs: RunStore
    candidates: CandidateSource
    record: RunRecord
    training: TrainingSettings  # the run's own settings (the trainer's, with the request's overrides)
    triplets: list[Triplet]
    cancel: threading.Event

    @property
    def run_id(self) -> str:
        return self.record.run_id

    @property
    def start_from(self) -> str:
        """"champion" (the corpus's champion, when it serves one this recipe can start from) or "base"."""
        return self.record.settings["start_from"]

    def started(self, base_model: str) -> None:
        self.runs.update(self.run_id, status="running", started_at=now(), base_model=base_model)

    def manifest_fields(self, metrics: dict[str, float], base_model: str, **fields: Any) -> dict[str, Any]:
        """The fields every recipe's version records about its run, and the recipe's own."""
        return {"run_id": self.run_id, "corpus_id": self.record.corpus_id, "triplet_files": self.record.triplet_files,
                "metrics": metrics, "base_model": base_model, **fields}
