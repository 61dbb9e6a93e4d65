"""Trainer benchmark (`make bench`): training throughput and mining cost.

1. Training pairs/s: the trainer's run (`services.trainer.training.train_run`: CrossEncoderTrainer,
   BCE, metric streaming to disk) against a plain sentence-transformers `CrossEncoder.fit` script,
   on the same pairs (WikiQA train triplets from the shared data), the same settings (max_length,
   batch size, learning rate, seed, one epoch) and the same starting weights (the packaged
   all-MiniLM-L6-v2 with a fresh seeded head), one after the other in the same process.
2. Mining time per 10k events: a synthetic log (impressions, clicks with dwell, ratings) on a
   small corpus, mined with the events rules (join, cascade negatives, propensity weights).

Prints a table and writes bench/results/trainer.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from services.common.config import EndpointSettings, MiningSettings, Settings, TrainingSettings  # noqa: E402
from services.common.documents import Doc  # noqa: E402
from services.events.store import EventStore  # noqa: E402
from services.proto.feedrank.v1 import feedback_pb2  # noqa: E402
from services.retriever.corpus import DocStore  # noqa: E402
from services.trainer.candidates import FileCandidates  # noqa: E402
from services.trainer.mining import Miner, Triplet  # noqa: E402
from services.trainer.runs import RunRecord, RunStore, new_run_id, now  # noqa: E402
from services.trainer.training import base_model_dir, build_dataset, train_run  # noqa: E402

console = Console()
DATA = REPO.parent / "shared" / "data"


def wikiqa_triplets(n: int, negatives: int, seed: int) -> list[Triplet]:
    rng = random.Random(seed)
    out = []
    with (DATA / "wikiqa" / "rerank_train.jsonl").open() as fh:
        for line in fh:
            row = json.loads(line)
            pos = [c for c in row["candidates"] if c["label"] > 0]
            neg = [c for c in row["candidates"] if c["label"] <= 0]
            if pos and len(neg) >= negatives:
                picked = rng.sample(neg, negatives)
                out.append(Triplet(row["query"], pos[0]["text"], pos[0]["id"], [c["text"] for c in picked],
                                   [c["id"] for c in picked], "wikiqa"))
            if len(out) == n:
                break
    return out


def bench_trainer(triplets: list[Triplet], training: TrainingSettings, work: Path) -> dict:
    store = RunStore(work / "runs")
    run_id = new_run_id()
    store.create(RunRecord(run_id, "bench", "train", "running", now(), {}, []))
    started = time.perf_counter()
    outcome = train_run(store, run_id, training, base_model_dir(training), True, triplets, threading.Event())
    seconds = time.perf_counter() - started
    return {"pairs": outcome.data["train_pairs"], "seconds": seconds, "pairs_per_s": outcome.data["train_pairs"] / seconds}


def bench_plain_fit(triplets: list[Triplet], training: TrainingSettings) -> dict:
    """What a hand-written script does: InputExamples, a DataLoader, CrossEncoder.fit."""
    import torch
    import transformers
    from sentence_transformers import CrossEncoder, InputExample
    from torch.utils.data import DataLoader

    examples = []
    for t in triplets:
        examples.append(InputExample(texts=[t.query, t.positive_text], label=1.0))
        examples += [InputExample(texts=[t.query, n], label=0.0) for n in t.negative_texts[: training.negatives_per_positive]]
    started = time.perf_counter()
    transformers.set_seed(training.seed)
    model = CrossEncoder(str(base_model_dir(training)), num_labels=1, max_length=training.max_length, device="cpu")
    loader = DataLoader(examples, shuffle=True, batch_size=training.batch_size, generator=torch.Generator().manual_seed(training.seed))
    steps = len(loader) * training.epochs
    model.fit(train_dataloader=loader, epochs=training.epochs, warmup_steps=int(steps * training.warmup_ratio),
              optimizer_params={"lr": training.learning_rate}, show_progress_bar=False)
    seconds = time.perf_counter() - started
    return {"pairs": len(examples), "seconds": seconds, "pairs_per_s": len(examples) / seconds}


def bench_mining(n_events: int, work: Path, seed: int) -> dict:
    """Synthetic log: per query an impression of 10 results, a click (varied dwell), sometimes a rating."""
    rng = random.Random(seed)
    data_dir = work / "mine"
    root = data_dir / "corpora" / "bench"
    (root / "qrels").mkdir(parents=True)
    docs = [Doc(f"d{i}", f"title {i}", f"document number {i} about topic {i % 50}") for i in range(2000)]
    store = DocStore(root / "docs.sqlite")
    store.upsert(docs)
    store.close()
    (data_dir / "candidates.json").write_text("{}")
    settings = Settings(data_dir=str(data_dir), endpoints=EndpointSettings(metrics_port_offset=0),
                        training=TrainingSettings(candidates_file=str(data_dir / "candidates.json"),
                                                  mining=MiningSettings(propensity_weights=True)))
    events, i = [], 0
    while len(events) < n_events:
        qid = f"q{i}"
        shown = rng.sample(range(len(docs)), 10)
        events.append(feedback_pb2.FeedbackEvent(
            event_id=f"i{i}", query_id=qid, session_id=f"s{i % 97}", timestamp_ms=1_700_000_000_000 + i,
            impression=feedback_pb2.Impression(corpus_id="bench", query=f"query {i % 3000}", results=[
                feedback_pb2.ShownResult(doc_id=f"d{d}", rank=r) for r, d in enumerate(shown, 1)])))
        rank = min(10, int(rng.expovariate(0.5)) + 1)
        events.append(feedback_pb2.FeedbackEvent(
            event_id=f"c{i}", query_id=qid, session_id=f"s{i % 97}", timestamp_ms=1_700_000_000_500 + i,
            click=feedback_pb2.Click(doc_id=f"d{shown[rank - 1]}", rank=rank, dwell_ms=rng.choice([2000, 15000, 60000]))))
        if rng.random() < 0.3:
            events.append(feedback_pb2.FeedbackEvent(
                event_id=f"r{i}", query_id=qid, session_id=f"s{i % 97}", timestamp_ms=1_700_000_000_900 + i,
                rating=feedback_pb2.Rating(doc_id=f"d{shown[rng.randrange(10)]}", rating=rng.choice([1, 2, 4, 5]))))
        i += 1
    events = events[:n_events]
    store = EventStore.open(settings)
    store.add(events)
    started = time.perf_counter()
    result = Miner(settings, FileCandidates(data_dir / "candidates.json"), store).mine("bench", ["events"])
    seconds = time.perf_counter() - started
    store.close()
    return {"events": n_events, "seconds": seconds, "seconds_per_10k": seconds * 10_000 / n_events,
            "triplets": result.counts["events"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triplets", type=int, default=48, help="WikiQA triplets (x (1+negatives) pairs)")
    parser.add_argument("--negatives", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "trainer.json")
    args = parser.parse_args()
    if not (DATA / "wikiqa" / "rerank_train.jsonl").is_file():
        sys.exit(f"WikiQA not found under {DATA}")
    training = TrainingSettings(max_length=args.max_length, batch_size=args.batch_size, negatives_per_positive=args.negatives,
                                dev_share=0.0, epochs=1, seed=13)
    triplets = wikiqa_triplets(args.triplets, args.negatives, 13)
    _, pairs = build_dataset(triplets, training)
    with tempfile.TemporaryDirectory(prefix="feedrank-bench-trainer-") as tmp:
        work = Path(tmp)
        console.print(f"training {pairs} pairs twice (feedrank run, plain CrossEncoder.fit), then mining {args.events} events")
        ours = bench_trainer(triplets, training, work)
        plain = bench_plain_fit(triplets, training)
        mining = bench_mining(args.events, work, 13)
    table = Table("what", "pairs", "seconds", "pairs/s", title="trainer benchmark")
    table.add_row("feedrank train_run (CrossEncoderTrainer + streaming)", str(ours["pairs"]), f"{ours['seconds']:.1f}",
                  f"{ours['pairs_per_s']:.2f}")
    table.add_row("plain CrossEncoder.fit script", str(plain["pairs"]), f"{plain['seconds']:.1f}", f"{plain['pairs_per_s']:.2f}")
    console.print(table)
    console.print(f"ratio feedrank / plain: {ours['pairs_per_s'] / plain['pairs_per_s']:.2f}")
    console.print(f"mining: {mining['events']} events in {mining['seconds']:.2f}s "
                  f"({mining['seconds_per_10k']:.2f}s per 10k events, {mining['triplets']} triplets)")
    result = {"created_at": now(), "machine": platform.platform(), "settings": training.model_dump(mode="json"),
              "feedrank": ours, "plain_fit": plain, "ratio": ours["pairs_per_s"] / plain["pairs_per_s"], "mining": mining}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
