"""Shared by the fault and fuzz suites: a tiny BEIR corpus ingested for real, and the local stack on it.

The stack is the one `feedrank up` runs (services.devstack.stack.LocalStack): the Tansu broker and every
gRPC service as real processes on free loopback ports. The corpus is 30 short documents so ingest and
search stay cheap on a busy 2-core machine.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from services.common.config import Settings
from services.devstack.stack import LocalStack

CORPUS = "tiny"

_TOPICS = [
    ("aspirin", "Aspirin lowers the risk of heart attack in adults over fifty."),
    ("vitamin", "Vitamin D supplements improve bone density in older women."),
    ("sleep", "Short sleep duration is linked to weight gain in teenagers."),
    ("coffee", "Coffee consumption is associated with lower liver disease rates."),
    ("exercise", "Regular aerobic exercise reduces resting blood pressure."),
    ("smoking", "Smoking cessation halves the risk of lung cancer within ten years."),
]


def write_tiny_beir(folder: Path) -> Path:
    """A BEIR folder: 30 documents (5 per topic), one query per topic, train qrels to the topic's documents."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "corpus.jsonl").open("w") as out:
        for t, (topic, sentence) in enumerate(_TOPICS):
            for i in range(5):
                out.write(json.dumps({"_id": f"d{t}-{i}", "title": f"{topic} study {i}",
                                      "text": f"{sentence} Cohort {i} of {topic} research."}) + "\n")
    with (folder / "queries.jsonl").open("w") as out:
        for t, (topic, _) in enumerate(_TOPICS):
            out.write(json.dumps({"_id": f"q{t}", "text": f"does {topic} affect health"}) + "\n")
    (folder / "qrels").mkdir(exist_ok=True)
    rows = ["query-id\tcorpus-id\tscore"] + [f"q{t}\td{t}-{i}\t1" for t in range(len(_TOPICS)) for i in range(5)]
    (folder / "qrels" / "train.tsv").write_text("\n".join(rows) + "\n")
    return folder


def queries() -> list[str]:
    return [f"does {topic} affect health" for topic, _ in _TOPICS]


def ingest(data_dir: Path, dataset: Path, corpus_id: str = CORPUS) -> None:
    """The retriever's offline ingest (as `feedrank demo` runs it) into the data dir the stack will serve."""
    from services.retriever.service import open_offline

    with open_offline(Settings(data_dir=str(data_dir))) as core:
        report = core.ingest_beir(corpus_id, dataset)
    assert report.documents == 30, report


def start_stack(root: Path, env: dict[str, str], *, durable_kafka: bool = False) -> LocalStack:
    """Ingest the tiny corpus, then start broker + services on it; the caller stops the stack."""
    data = root / "data"
    ingest(data, write_tiny_beir(root / "dataset"))
    base = {"FEEDRANK_LOG_LEVEL": "WARNING", "HF_HUB_OFFLINE": "1"}
    return LocalStack(data, env={**base, **env}, durable_kafka=durable_kafka).start()


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.25) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
