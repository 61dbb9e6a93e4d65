"""Feedback benchmark (`make bench`): events/s from gRPC clients into the trainer's event store,
and the end-to-end lag (client send -> row in the store) at a steady 500 events/s.

Real processes: Tansu (memory:// storage by default, --durable for s3:// on SeaweedFS), the
feedback service and the event consumer (`python -m services.events`), each a subprocess. The
asyncio load client runs in this process and shares the machine's cores with all of them: read
the absolute figures with that in mind. JSON goes to bench/results/feedback-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path

import grpc
import numpy as np
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from services.common.config import KafkaSettings, KafkaTopics  # noqa: E402
from services.devstack.broker import DevKafka  # noqa: E402
from services.events.store import EventStore  # noqa: E402
from services.kafka.connection import ensure_topics  # noqa: E402
from services.proto.feedrank.v1 import feedback_pb2, feedback_pb2_grpc  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.feedback.helpers import (  # noqa: E402
    SIGNING_KEY,
    FeedbackProcess,
    ServiceProcess,
    make_event,
    signed_query_id,
    wait_until,
)

console = Console()
KINDS = ("impression", "click", "rating")


def batch_of(prefix: str, start: int, size: int) -> list[feedback_pb2.FeedbackEvent]:
    """`size` events stamped now; impressions, clicks and ratings in turn, on signed query_ids."""
    return [make_event(f"{prefix}-{i}", KINDS[i % 3], query_id=signed_query_id(f"{prefix}-q{i // 3}"))
            for i in range(start, start + size)]


async def sustained(stub: feedback_pb2_grpc.FeedbackStub, prefix: str, clients: int, batch: int,
                    seconds: float) -> tuple[int, int, float, list[float]]:
    """Closed loop: `clients` callers send batches back to back.
    Returns (events, of them spooled, seconds, rpc latencies)."""
    sent, spooled, latencies = 0, 0, []
    stop_at = time.perf_counter() + seconds

    async def caller(c: int) -> None:
        nonlocal sent, spooled
        n = 0
        while time.perf_counter() < stop_at:
            events = batch_of(f"{prefix}-c{c}", n, batch)
            started = time.perf_counter()
            reply = await stub.Record(feedback_pb2.RecordRequest(events=events), timeout=10)
            latencies.append(time.perf_counter() - started)
            spooled += reply.spooled
            n += batch
            sent += batch

    started = time.perf_counter()
    await asyncio.gather(*(caller(c) for c in range(clients)))
    return sent, spooled, time.perf_counter() - started, latencies


async def steady(stub: feedback_pb2_grpc.FeedbackStub, prefix: str, rate: int, seconds: float,
                 batch: int) -> tuple[int, int, list[float]]:
    """Open loop: a batch every batch/rate seconds whether or not earlier calls have returned."""
    interval = batch / rate
    latencies: list[float] = []
    spooled = 0
    tasks = []

    async def one(n: int) -> None:
        nonlocal spooled
        started = time.perf_counter()
        reply = await stub.Record(feedback_pb2.RecordRequest(events=batch_of(prefix, n, batch)), timeout=10)
        latencies.append(time.perf_counter() - started)
        spooled += reply.spooled

    begin = time.perf_counter()
    ticks = int(seconds * rate / batch)
    for k in range(ticks):
        await asyncio.sleep(max(0.0, begin + k * interval - time.perf_counter()))
        tasks.append(asyncio.create_task(one(k * batch)))
    await asyncio.gather(*tasks)
    return ticks * batch, spooled, latencies


def wait_stored(store: EventStore, total: int, timeout_s: float = 300) -> float:
    """Seconds until the store holds `total` events (polled every 50 ms)."""
    started = time.perf_counter()
    wait_until(lambda: store.count() >= total, timeout_s, f"{total} events in the store", interval_s=0.05)
    return time.perf_counter() - started


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


async def run(args: argparse.Namespace, work: Path) -> dict:
    results: dict = {
        "bench": "feedback", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_average_at_start": os.getloadavg()},
        "broker": "tansu " + ("s3:// on SeaweedFS" if args.durable else "memory://"),
        "note": "load client, broker, feedback service and consumer share the machine's cores",
    }
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    with DevKafka(work / "kafka", durable=args.durable) as dev:
        kafka = KafkaSettings(bootstrap_servers=dev.bootstrap_servers, topics=KafkaTopics(feedback=topic))
        ensure_topics(kafka, [topic])
        env = {"FEEDRANK_DATA_DIR": str(work / "data"), "FEEDRANK_KAFKA__BOOTSTRAP_SERVERS": dev.bootstrap_servers,
               "FEEDRANK_KAFKA__TOPICS__FEEDBACK": topic, "FEEDRANK_ENDPOINTS__METRICS_PORT_OFFSET": "0",
               "FEEDRANK_LOG_LEVEL": "WARNING", "FEEDRANK_KAFKA__CONSUMER_GROUP": f"bench-{topic}",
               # query_ids are signed as the retriever would; the events share one session, so its cap is lifted.
               "FEEDRANK_FEEDBACK__SIGNING_KEY": SIGNING_KEY, "FEEDRANK_FEEDBACK__MAX_EVENTS_PER_SESSION": str(10**9)}
        service = FeedbackProcess(free_port(), env, work / "feedback.log")
        consumer = ServiceProcess("services.events", [], env, work / "consumer.log")
        service.start()
        consumer.start()
        store_file = work / "data" / "events" / "events.sqlite3"
        try:
            wait_until(store_file.exists, 30, "the event store")
            store = EventStore(store_file, read_only=True)
            async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
                stub = feedback_pb2_grpc.FeedbackStub(channel)
                await stub.Record(feedback_pb2.RecordRequest(events=batch_of("warmup", 0, 30)), timeout=10)
                wait_stored(store, 30, 60)  # the consumer has joined its group
                total = 30
                runs = []
                for clients, batch in ((16, 1), (4, 100)):
                    console.print(f"sustained: {clients} clients x batches of {batch} for {args.seconds}s")
                    sent, spooled, took, lat = await sustained(stub, f"s{clients}x{batch}", clients, batch, args.seconds)
                    total += sent
                    drain = wait_stored(store, total)
                    runs.append({"clients": clients, "batch": batch, "events": sent, "spooled": spooled,
                                 "accepted_per_s": round(sent / took, 1),
                                 "stored_per_s": round(sent / (took + drain), 1),
                                 "rpc_p50_ms": round(pct(lat, 50) * 1000, 2), "rpc_p99_ms": round(pct(lat, 99) * 1000, 2)})
                results["sustained"] = runs

                console.print(f"steady: {args.rate} events/s for {args.steady_seconds}s")
                since = int(time.time() * 1000)
                sent, spooled, lat = await steady(stub, "steady", args.rate, args.steady_seconds, args.steady_batch)
                total += sent
                wait_stored(store, total)
                lags = store.lag_ms(since)
                results["steady"] = {
                    "rate_events_per_s": args.rate, "batch": args.steady_batch, "events": sent, "spooled": spooled,
                    "lag_p50_ms": pct(lags, 50), "lag_p99_ms": pct(lags, 99), "lag_max_ms": max(lags),
                    "rpc_p50_ms": round(pct(lat, 50) * 1000, 2), "rpc_p99_ms": round(pct(lat, 99) * 1000, 2),
                }
                info = await stub.GetInfo(feedback_pb2.GetFeedbackInfoRequest(), timeout=5)
                results["spool_depth_at_end"] = info.spool_depth
                results["store_events"] = store.count()
                results["machine"]["load_average_at_end"] = os.getloadavg()
            store.close()
        finally:
            service.close_channel()
            service.stop()
            consumer.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.feedback")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each sustained run")
    parser.add_argument("--rate", type=int, default=500, help="events/s of the steady (lag) run")
    parser.add_argument("--steady-seconds", type=float, default=20.0)
    parser.add_argument("--steady-batch", type=int, default=5, help="events per Record call in the steady run")
    parser.add_argument("--durable", action="store_true", help="s3:// storage on SeaweedFS instead of memory://")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="feedrank-bench-") as tmp:
        results = asyncio.run(run(args, Path(tmp)))
    table = Table("run", "events", "accepted/s", "stored/s", "rpc p50 ms", "rpc p99 ms")
    for r in results["sustained"]:
        table.add_row(f"{r['clients']} clients x {r['batch']}", str(r["events"]), str(r["accepted_per_s"]),
                      str(r["stored_per_s"]), str(r["rpc_p50_ms"]), str(r["rpc_p99_ms"]))
    console.print(table)
    s = results["steady"]
    console.print(f"at {s['rate_events_per_s']} events/s: end-to-end lag p50 {s['lag_p50_ms']:.0f} ms, "
                  f"p99 {s['lag_p99_ms']:.0f} ms (max {s['lag_max_ms']} ms); {results['broker']}")
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"feedback-{time.strftime('%Y%m%dT%H%M%S')}{'-durable' if args.durable else ''}.json"
    out.write_text(json.dumps(results, indent=2))
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
