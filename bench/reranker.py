"""Reranker benchmark (`make bench`): feedrank over gRPC vs in-process sentence-transformers vs Infinity.

Same model (the packaged MiniLM-L6 with a seeded cross-encoder head), same inputs (SciFact claim /
abstract pairs, 256 tokens max), same machine, one run. Prints a table and the ratios, writes JSON
to bench/results/. The load client shares the machine's cores with the server: keep that in mind
when reading absolute figures; the ratios are what compare.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.machine import describe as describe_machine  # noqa: E402
from services.common.config import EngineSettings  # noqa: E402
from services.engine.cpus import usable_cores  # noqa: E402
from services.proto.feedrank.v1 import reranker_pb2, reranker_pb2_grpc  # noqa: E402
from services.registry.importer import import_model  # noqa: E402
from services.registry.store import FileRegistry  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.reranker.conftest import RerankerProcess, make_cross_encoder, scifact_pairs  # noqa: E402

GFLOP_PER_PAIR_256 = 6.0  # MiniLM-L6 forward pass at 256 tokens (issue 2)
console = Console()


def matmul_gflops(seconds: float = 3.0) -> float:
    """The machine's fp32 matmul rate with numpy's BLAS, all cores, measured now."""
    n = 1024
    a, b = np.random.rand(n, n).astype(np.float32), np.random.rand(n, n).astype(np.float32)
    a @ b
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        runs += 1
    return 2 * n**3 * runs / (time.perf_counter() - start) / 1e9


def make_requests(docs_per_request: int, count: int) -> list[tuple[str, list[str]]]:
    pairs = scifact_pairs(max(count, docs_per_request) * 2)
    queries = [q for q, _ in pairs]
    docs = [d for _, d in pairs]
    return [(queries[i % len(queries)], [docs[(i * 7 + j) % len(docs)] for j in range(docs_per_request)])
            for i in range(count)]


def summarize(latencies: list[float], pairs: int, wall: float) -> dict:
    lat = sorted(latencies)
    return {
        "pairs_per_s": pairs / wall,
        "p50_ms": 1000 * lat[len(lat) // 2],
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        "requests": len(lat),
        "wall_s": wall,
    }


async def batch_policies(target: str) -> list[dict]:
    """The batch curve and policy the server measured for each loaded version (GetInfo)."""
    async with grpc.aio.insecure_channel(target) as channel:
        info = await reranker_pb2_grpc.RerankerStub(channel).GetInfo(reranker_pb2.GetRerankerInfoRequest(), timeout=30)
    return [{"version_id": p.version_id, "merge": p.merge, "batch_pairs": p.batch_pairs, "gain": p.gain,
             "calibration_tokens": p.calibration_tokens, "pairs_per_s": {str(k): v for k, v in sorted(p.pairs_per_s.items())}}
            for p in info.limits.policies]


async def grpc_load(target: str, requests: list[tuple[str, list[str]]], concurrency: int) -> dict:
    messages = [
        reranker_pb2.RerankRequest(query=q, truncate=True,
                                   documents=[reranker_pb2.RerankDocument(id=str(i), text=t) for i, t in enumerate(docs)])
        for q, docs in requests
    ]
    latencies: list[float] = []
    queue = list(enumerate(messages))
    async with grpc.aio.insecure_channel(target) as channel:
        stub = reranker_pb2_grpc.RerankerStub(channel)
        await stub.Rerank(messages[0], timeout=120)  # warm the connection and the model

        async def worker() -> None:
            while queue:
                _, message = queue.pop()
                t0 = time.perf_counter()
                await stub.Rerank(message, timeout=300)
                latencies.append(time.perf_counter() - t0)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return summarize(latencies, sum(len(d) for _, d in requests), wall)


def torch_load(model_dir: Path, requests, concurrency: int) -> dict:
    import torch
    from sentence_transformers import CrossEncoder

    torch.set_num_threads(usable_cores())  # the same cores feedrank's sessions are given
    model = CrossEncoder(str(model_dir), max_length=256, device="cpu")
    model.predict([(requests[0][0], requests[0][1][0])])
    latencies: list[float] = []

    def one(request) -> None:
        q, docs = request
        t0 = time.perf_counter()
        model.predict([(q, d) for d in docs], batch_size=32)
        latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, requests))
    return summarize(latencies, sum(len(d) for _, d in requests), time.perf_counter() - start)


def infinity_load(model_dir: Path, requests, concurrency: int, venv: Path) -> dict | str:
    """Infinity (PyPI infinity-emb) serving the same folder, if its venv exists (bench/peers.sh)."""
    exe = venv / "bin" / "infinity_emb"
    if not exe.exists():
        return f"skipped: {exe} missing (run bench/peers.sh to install Infinity)"
    import httpx

    # Infinity truncates to the tokenizer's model_max_length: make it the bench's 256.
    served = Path(tempfile.mkdtemp(prefix="infinity-model-"))
    shutil.copytree(model_dir, served, dirs_exist_ok=True)
    config = json.loads((served / "tokenizer_config.json").read_text())
    config["model_max_length"] = 256
    (served / "tokenizer_config.json").write_text(json.dumps(config))
    port = free_port()
    log = open(served / "infinity.log", "w")
    proc = subprocess.Popen(
        [str(exe), "v2", "--model-id", str(served), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu",
         "--engine", "torch", "--no-bettertransformer"], stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(1)
        else:
            return "skipped: Infinity did not become healthy"

        async def run() -> dict:
            latencies: list[float] = []
            queue = list(requests)
            async with httpx.AsyncClient(base_url=url, timeout=600) as client:
                await client.post("/rerank", json={"query": requests[0][0], "documents": requests[0][1]})

                async def worker() -> None:
                    while queue:
                        q, docs = queue.pop()
                        t0 = time.perf_counter()
                        r = await client.post("/rerank", json={"query": q, "documents": docs})
                        r.raise_for_status()
                        latencies.append(time.perf_counter() - t0)

                start = time.perf_counter()
                await asyncio.gather(*(worker() for _ in range(concurrency)))
                wall = time.perf_counter() - start
            return summarize(latencies, sum(len(d) for _, d in requests), wall)

        return asyncio.run(run())
    finally:
        proc.terminate()
        proc.wait(30)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def score_drift(registry: FileRegistry, pairs) -> dict:
    from services.engine.scorer import OnnxCrossEncoder

    version = registry.resolve("champion")
    folder, manifest = registry.local_path(version), registry.manifest(version)
    out = {}
    for precision in ("fp32", "int8"):
        scorer = OnnxCrossEncoder(folder, manifest, EngineSettings(precision=precision))
        scores = []
        t0 = time.perf_counter()
        for start in range(0, len(pairs), 32):
            chunk = pairs[start:start + 32]
            q = chunk[0][0]
            scores.append(scorer.score(scorer.prepare(q, [d for _, d in chunk])))
        out[precision] = {"pairs_per_s": len(pairs) / (time.perf_counter() - t0), "scores": np.concatenate(scores)}
    diff = np.abs(out["fp32"]["scores"] - out["int8"]["scores"])
    return {
        "fp32_pairs_per_s": out["fp32"]["pairs_per_s"],
        "int8_pairs_per_s": out["int8"]["pairs_per_s"],
        "int8_speedup": out["int8"]["pairs_per_s"] / out["fp32"]["pairs_per_s"],
        "int8_max_abs_drift": float(diff.max()),
        "int8_mean_abs_drift": float(diff.mean()),
        "int8_rank_corr": float(np.corrcoef(np.argsort(np.argsort(out["fp32"]["scores"])),
                                            np.argsort(np.argsort(out["int8"]["scores"])))[0, 1]),
    }


def batch_curve(registry: FileRegistry, sizes=(1, 2, 4, 8, 16, 32, 64), seconds: float = 2.0) -> dict:
    """Pairs/s of one forward pass by batch size, in-process, for the short pairs of deploy/ghz/rerank.json.

    The most dynamic batching can add is the best of these over size 1: on a CPU the model saturates
    the cores at a handful of pairs, so merging requests pays little beyond that (on a GPU it pays far more).
    """
    from services.engine.scorer import OnnxCrossEncoder

    version = registry.resolve("champion")
    scorer = OnnxCrossEncoder(registry.local_path(version), registry.manifest(version), EngineSettings())
    data = json.loads((REPO / "deploy" / "ghz" / "rerank.json").read_text())["data"]
    texts = [d["text"] for d in data["documents"]]
    out = {}
    for size in sizes:
        encodings = scorer.prepare(data["query"], (texts * (size // len(texts) + 1))[:size])
        scorer.score(encodings)
        runs, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            scorer.score(encodings)
            runs += 1
        out[str(size)] = size * runs / (time.perf_counter() - start)
    out["ceiling_vs_batch_1"] = max(v for k, v in out.items() if k != "1") / out["1"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs-per-request", type=int, default=16)
    parser.add_argument("--pairs", type=int, default=512, help="pairs per measurement")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--infinity-venv", default=str(REPO / ".venv-infinity"))
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "reranker.json"))
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    requests = make_requests(args.docs_per_request, args.pairs // args.docs_per_request)

    work = Path(tempfile.mkdtemp(prefix="feedrank-bench-"))
    with console.status("building the benchmark model (MiniLM-L6 + cross-encoder head)"):
        model_dir = make_cross_encoder(work / "hf", seed=0, max_length=256)
        registry = FileRegistry(work / "registry")
        import_model(registry, model_dir, EngineSettings(), alias="champion", max_length=256)
    with console.status("measuring matmul GFLOP/s"):
        gflops = matmul_gflops()

    results: dict = {
        "machine": {**describe_machine(), "matmul_gflops": gflops},
        "setup": {"docs_per_request": args.docs_per_request, "pairs_per_measurement": args.pairs, "max_length": 256,
                  "note": "load client shares the machine with the server"},
        "runs": {},
    }
    for name, batching in (("feedrank_batching", "true"), ("feedrank_no_batching", "false")):
        # The peers truncate each pair at 256 tokens: so does feedrank here (passages are bench/passages.py's row).
        server = RerankerProcess(registry.root, work, FEEDRANK_ENGINE__BATCHING_ENABLED=batching,
                                 FEEDRANK_ENGINE__CACHE_ENTRIES="0", FEEDRANK_ENGINE__MAX_QUEUE_PAIRS="100000",
                                 FEEDRANK_RERANKING__PASSAGE_AGGREGATE="first").start()
        try:
            for c in levels:
                with console.status(f"{name} at concurrency {c}"):
                    results["runs"].setdefault(name, {})[str(c)] = asyncio.run(grpc_load(server.target, requests, c))
            results["runs"][name]["peak_rss_mb"] = peak_rss_mb(server.proc.pid)
            results.setdefault("batch_policy", {})[name] = asyncio.run(batch_policies(server.target))
        finally:
            server.stop()
    for c in levels:
        with console.status(f"in-process CrossEncoder.predict (torch) at concurrency {c}"):
            results["runs"].setdefault("torch_in_process", {})[str(c)] = torch_load(model_dir, requests, c)
    for c in levels:
        with console.status(f"Infinity at concurrency {c}"):
            outcome = infinity_load(model_dir, requests, c, Path(args.infinity_venv))
        if isinstance(outcome, str):
            results["runs"]["infinity"] = outcome
            break
        results["runs"].setdefault("infinity", {})[str(c)] = outcome
    with console.status("int8 vs fp32"):
        results["int8"] = score_drift(registry, [(q, d) for q, docs in requests[:16] for d in docs])
    with console.status("pairs/s by batch size"):
        results["batch_curve_pairs_per_s"] = batch_curve(registry)

    best = max(results["runs"]["feedrank_batching"][str(c)]["pairs_per_s"] for c in levels)
    results["feedrank_gflops"] = best * GFLOP_PER_PAIR_256
    results["feedrank_share_of_matmul"] = results["feedrank_gflops"] / gflops
    top = str(levels[-1])
    runs = results["runs"]
    results["ratios"] = {
        **{f"batching_vs_torch_at_{c}": runs["feedrank_batching"][str(c)]["pairs_per_s"]
           / runs["torch_in_process"][str(c)]["pairs_per_s"] for c in levels},
        **{f"batching_vs_no_batching_at_{c}": runs["feedrank_batching"][str(c)]["pairs_per_s"]
           / runs["feedrank_no_batching"][str(c)]["pairs_per_s"] for c in levels},
        "int8_vs_fp32": results["int8"]["int8_speedup"],
    }
    if isinstance(results["runs"].get("infinity"), dict):
        results["ratios"][f"batching_vs_infinity_at_{top}"] = (
            results["runs"]["feedrank_batching"][top]["pairs_per_s"] / results["runs"]["infinity"][top]["pairs_per_s"]
        )
    results["machine"]["load_avg_1m_end"] = describe_machine()["load_avg_1m"]
    results["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    _print(results, levels)
    shutil.rmtree(work, ignore_errors=True)


def _print(results: dict, levels: list[int]) -> None:
    table = Table("runner", "concurrency", "pairs/s", "p50 ms", "p99 ms", title="Rerank, SciFact pairs, 256 tokens")
    for name, runs in results["runs"].items():
        if isinstance(runs, str):
            table.add_row(name, "-", runs, "", "")
            continue
        for c in levels:
            r = runs[str(c)]
            table.add_row(name, str(c), f"{r['pairs_per_s']:.1f}", f"{r['p50_ms']:.0f}", f"{r['p99_ms']:.0f}")
    console.print(table)
    console.print(f"matmul {results['machine']['matmul_gflops']:.1f} GFLOP/s; feedrank achieved "
                  f"{results['feedrank_gflops']:.1f} GFLOP/s ({100 * results['feedrank_share_of_matmul']:.0f}% of matmul)")
    console.print(f"peak RSS: batching {results['runs']['feedrank_batching']['peak_rss_mb']:.0f} MB")
    console.print("int8: " + ", ".join(f"{k} {v:.3f}" for k, v in results["int8"].items()))
    console.print("pairs/s by batch size (short pairs, in-process): " + ", ".join(
        f"{k} {v:.0f}" if k.isdigit() else f"{k} {v:.2f}x" for k, v in results["batch_curve_pairs_per_s"].items()))
    for name, policies in results.get("batch_policy", {}).items():
        for p in policies:
            console.print(f"{name}: measured curve {p['pairs_per_s']} at {p['calibration_tokens']} tokens, gain "
                          f"{p['gain']:.2f}x -> {'merge up to ' + str(p['batch_pairs']) if p['merge'] else 'no merging'}")
    console.print(f"machine: {results['machine']['cpu_model']}, ISA " + ", ".join(
        k for k, v in results["machine"]["isa"].items() if v) + f", usable cores {results['machine']['usable_cores']}, "
        f"load {results['machine']['load_avg_1m']:.1f} -> {results['machine']['load_avg_1m_end']:.1f}")
    console.print("ratios: " + ", ".join(f"{k} {v:.2f}x" for k, v in results["ratios"].items()))


if __name__ == "__main__":
    main()
