"""`feedrank ingest`, `feedrank search`, `feedrank eval`.

ingest and eval work offline on the data dir (stop a running retriever first when ingesting
with the embedded backends: they hold their index files open). search runs in-process on the
data dir, or against a running retriever with --target host:port.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Optional

import grpc
import typer
from google.protobuf.json_format import MessageToJson
from rich.console import Console
from rich.table import Table

from services.common.channels import open_aio_channel
from services.common.config import get_settings
from services.common.credentials import operator_token
from services.common.errors import ErrorKind, FeedrankError, invalid
from services.ir import beir
from services.proto.feedrank.v1 import retriever_pb2, retriever_pb2_grpc
from services.retriever import convert
from services.retriever.chunking import chunk_repo
from services.retriever.evaluation import evaluate_corpus, write_report
from services.common.progress import progress, status

console = Console()


def _fail(err: FeedrankError) -> None:
    console.print(f"[red]error[/red] {err}")
    raise typer.Exit(2)


def ingest(
    corpus_id: Annotated[str, typer.Option("--corpus-id", help="Name of the corpus (letters, digits, _ . -)")],
    dataset: Annotated[
        Optional[str], typer.Option(help="BEIR dataset folder, or a BEIR dataset name to download (online only)")
    ] = None,
    repo: Annotated[Optional[Path], typer.Option(help="Source tree to index as code chunks")] = None,
    delete: Annotated[Optional[list[str]], typer.Option("--delete", help="Delete these doc ids (repeatable)")] = None,
    prune: Annotated[bool, typer.Option(help="Delete documents the source no longer has")] = False,
) -> None:
    """Index a BEIR dataset or a source tree into a corpus (offline, on the data dir). Re-running is idempotent."""
    from services.retriever.core import open_offline

    sources = [x for x in (dataset, repo, delete) if x]
    if len(sources) != 1:
        console.print("[red]error[/red] give exactly one of --dataset, --repo, --delete")
        raise typer.Exit(2)
    settings = get_settings()
    try:
        with open_offline(settings) as core:
            if delete:
                report = core.delete(corpus_id, list(delete))
            elif repo is not None:
                report = _ingest_repo(core, corpus_id, repo, prune, settings)
            else:
                report = _ingest_dataset(core, corpus_id, dataset, prune, settings)
    except FeedrankError as err:
        _fail(err)
    console.print_json(json.dumps(report.as_dict()))


def _ingest_dataset(core, corpus_id: str, dataset: str, prune: bool, settings):
    from services.retriever.ingest import count_lines, download_dataset  # the embedder: onnxruntime

    path = Path(dataset)
    if not path.exists():
        if "/" in dataset or dataset.startswith("."):
            raise invalid("dataset", f"{dataset} does not exist")
        console.print(f"{dataset} is not a folder: downloading the BEIR dataset {dataset!r}")
        path = download_dataset(dataset, settings.retrieval.dataset_url, settings.data_path / "datasets")
    beir.check_dataset(path)
    total = count_lines(path / "corpus.jsonl")
    with progress(console) as bar:
        task = bar.add_task(f"ingest {corpus_id}", total=total)
        return core.ingest_beir(corpus_id, path, prune=prune, progress=lambda n: bar.advance(task, n))


def _ingest_repo(core, corpus_id: str, repo: Path, prune: bool, settings):
    chunks = list(chunk_repo(repo, settings.retrieval))
    with progress(console) as bar:
        task = bar.add_task(f"ingest {corpus_id}", total=len(chunks))
        return core.ingest(corpus_id, chunks, prune=prune, source=str(repo.resolve()),
                           progress=lambda n: bar.advance(task, n))


def search(
    query: Annotated[str, typer.Argument(help="The query text")],
    corpus_id: Annotated[str, typer.Option("--corpus-id", help="Corpus to search")],
    top_k: Annotated[int, typer.Option(help="Results to show; 0 = configured default")] = 0,
    candidate_k: Annotated[int, typer.Option(help="Depth of each leg; 0 = configured default")] = 0,
    fusion: Annotated[Optional[str], typer.Option(help="Override the fusion method: rrf, weighted, dbsf")] = None,
    rerank_mode: Annotated[Optional[str], typer.Option(help="none skips the reranker")] = None,
    target: Annotated[Optional[str], typer.Option(help="host:port of a running retriever (else in-process)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the response as JSON")] = False,
) -> None:
    """Hybrid search. In-process on the data dir, or against a running retriever with --target."""
    try:
        if target:
            response = asyncio.run(_search_remote(target, query, corpus_id, top_k, candidate_k, fusion, rerank_mode))
        else:
            response = asyncio.run(_search_local(query, corpus_id, top_k, candidate_k, fusion, rerank_mode))
    except FeedrankError as err:
        _fail(err)
    if as_json:
        console.print_json(MessageToJson(response))
        return
    table = Table("rank", "doc id", "title", "fused", "bm25 #", "dense #", "rerank", title=f"query_id {response.query_id}")
    for r in response.results:
        table.add_row(
            str(r.rank), r.doc_id, (r.title or r.snippet)[:70], f"{r.legs.fused_score:.4f}",
            str(r.legs.lexical_rank or "-"), str(r.legs.vector_rank or "-"),
            f"{r.rerank_score:.3f}" if response.reranked else "-",
        )
    (console if console.is_terminal else Console(width=130)).print(table)
    console.print(
        f"model {response.model_version}  reranked {response.reranked}  "
        f"bm25 {response.lexical_ms:.1f} ms  dense {response.vector_ms:.1f} ms  total {response.timings.total_ms:.1f} ms"
    )
    if response.degraded_reason:
        console.print(f"[yellow]degraded:[/yellow] {response.degraded_reason}")


def _request(query, corpus_id, top_k, candidate_k, fusion, rerank_mode):
    methods = {"rrf": 1, "weighted": 2, "dbsf": 3}
    if fusion is not None and fusion not in methods:
        raise invalid("fusion", f"must be one of {', '.join(methods)}")
    request = retriever_pb2.SearchRequest(corpus_id=corpus_id, query=query, top_k=top_k, candidate_k=candidate_k)
    if fusion:
        request.fusion.method = methods[fusion]
    if rerank_mode is not None:
        request.rerank_mode = rerank_mode
    return request


async def _search_local(query, corpus_id, top_k, candidate_k, fusion, rerank_mode):
    from services.retriever.core import RetrieverCore

    request = _request(query, corpus_id, top_k, candidate_k, fusion, rerank_mode)
    core = RetrieverCore(get_settings())
    try:
        # Load the embedder first so the reported timings are the search's, not the model load's.
        await asyncio.to_thread(lambda: core.embedder)
        return convert.search_response(await core.search(convert.search_query(request, core.settings.retrieval)))
    finally:
        await core.aclose()


async def _search_remote(target, query, corpus_id, top_k, candidate_k, fusion, rerank_mode):
    request = _request(query, corpus_id, top_k, candidate_k, fusion, rerank_mode)
    settings = get_settings()
    async with open_aio_channel(target, settings.endpoints, token=operator_token(settings)) as channel:
        try:
            return await retriever_pb2_grpc.RetrieverStub(channel).Search(request, timeout=60)
        except grpc.aio.AioRpcError as err:
            kind = ErrorKind.INVALID_ARGUMENT if err.code() == grpc.StatusCode.INVALID_ARGUMENT else ErrorKind.UNAVAILABLE
            raise FeedrankError(kind, f"{target}: {err.code().name}: {err.details()}") from err


def eval_cmd(
    corpus_id: Annotated[str, typer.Option("--corpus-id", help="A corpus ingested from a BEIR dataset")],
    split: Annotated[str, typer.Option(help="qrels split to evaluate")] = "test",
    depth: Annotated[int, typer.Option(help="Depth of each leg (at least 100)")] = 100,
    rerank: Annotated[bool, typer.Option(help="Add fused+rerank when a reranker answers")] = True,
    out: Annotated[Optional[Path], typer.Option(help="Folder for the JSON report (default: $FEEDRANK_DATA_DIR/evals)")] = None,
) -> None:
    """nDCG@10, MRR@10, Recall@100, Hit@1/3/5/10 of bm25, dense, each fusion and fused+rerank (offline on the data dir;
    the rerank row needs a running reranker)."""
    from services.retriever.core import open_offline

    settings = get_settings()
    try:
        with open_offline(settings) as core, status(console, f"evaluating {corpus_id} on its {split} queries"):
            result = evaluate_corpus(core, corpus_id, split, depth=depth, rerank=rerank)
    except FeedrankError as err:
        _fail(err)
    names = list(next(iter(result.rows.values())))
    table = Table(title=f"{corpus_id} {split}: {result.queries} queries")
    table.add_column("ranking", no_wrap=True)
    for name in names:
        table.add_column(name, justify="right", no_wrap=True)
    for row, values in result.rows.items():
        table.add_row(row, *(f"{values[m]:.4f}" for m in names))
    # Piped output (no terminal) would otherwise be squeezed to 80 columns, truncating the figures.
    (console if console.is_terminal else Console(width=130)).print(table)
    for note in result.notes:
        console.print(note)
    path = write_report(result, out or settings.data_path / "evals")
    console.print(f"wrote {path}")


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)
    app.command("search")(search)
    app.command("eval")(eval_cmd)
