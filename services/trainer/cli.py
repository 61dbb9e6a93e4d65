"""`feedrank mine|train|runs|evaluate|promote|rollback|experiment` (talk to the trainer at --target) and
`feedrank model bootstrap|decisions`, `feedrank train --offline` (offline: on the data dir)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import grpc
import typer
from rich.console import Console
from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from services.common.channels import open_channel
from services.common.config import get_settings
from services.common.credentials import operator_token
from services.common.errors import FeedrankError
from services.common.progress import progress, status
from services.proto.feedrank.v1 import trainer_pb2, trainer_pb2_grpc
from services.trainer.runs import RunRecord, diff

console = Console()
runs_app = typer.Typer(no_args_is_help=True, help="Training runs on the trainer (list, show, diff)")
experiment_app = typer.Typer(no_args_is_help=True,
                             help="Online experiments: interleave champion and challenger")
STATUS = {v: k.removeprefix("RUN_STATUS_").lower() for k, v in trainer_pb2.RunStatus.items()}


def _target(target: Optional[str]) -> str:
    return target or get_settings().endpoints.trainer


def _channel(target: Optional[str]) -> grpc.Channel:
    settings = get_settings()
    return open_channel(_target(target), settings.endpoints, token=operator_token(settings))


def _call(target: Optional[str], method: str, request, timeout: float | None = 3600):
    """One RPC with the operator's token (endpoints.admin_token, else the data dir's admin.token); RPC errors
    end the command with code 2."""
    with _channel(target) as channel:
        stub = trainer_pb2_grpc.TrainerStub(channel)
        try:
            return getattr(stub, method)(request, timeout=timeout)
        except grpc.RpcError as err:
            console.print(f"[red]{method} failed:[/red] {err.code().name}: {err.details()}")
            raise typer.Exit(2) from err


def _follow(target: Optional[str], run_id: str) -> trainer_pb2.Run:
    """A progress bar over the run's streamed metrics until it ends."""
    with _channel(target) as channel, progress(
        console, TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("step {task.completed:.0f}/{task.total}"),
        TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
    ) as bar:
        task = bar.add_task(run_id, total=None, info="queued")
        stub = trainer_pb2_grpc.TrainerStub(channel)
        try:
            for m in stub.StreamRunMetrics(trainer_pb2.StreamRunMetricsRequest(run_id=run_id)):
                if m.name == "max_steps":
                    bar.update(task, total=m.value)
                elif m.name == "loss":
                    bar.update(task, completed=m.step, info=f"loss {m.value:.4f}")
                elif m.name.startswith("eval_"):
                    bar.console.print(f"epoch {m.epoch:.2f}: {m.name.removeprefix('eval_')} {m.value:.4f}")
                elif m.name == "status":
                    bar.update(task, info=m.status)
        except grpc.RpcError as err:
            console.print(f"[red]stream failed:[/red] {err.code().name}: {err.details()}")
            raise typer.Exit(2) from err
    return _call(target, "GetRun", trainer_pb2.GetRunRequest(run_id=run_id))


def _print_run(run: trainer_pb2.Run) -> None:
    table = Table("field", "value", title=f"run {run.run_id}")
    table.add_row("status", STATUS[run.status])
    for name in ("corpus_id", "created_at", "finished_at", "version_id", "error"):
        if getattr(run, name):
            table.add_row(name, str(getattr(run, name)))
    for k, v in sorted(run.metrics.items()):
        table.add_row(f"metric {k}", f"{v:.4f}")
    table.add_row("triplet files", "\n".join(run.triplet_files))
    console.print(table)


TargetOpt = typer.Option(None, "--target", help="Trainer host:port (default: endpoints.trainer)")


def mine(
    corpus_id: str = typer.Option(..., "--corpus-id", help="Corpus to mine for"),
    source: list[str] = typer.Option(["events"], "--source", help="events, golden, qrels, or an answer set name"),
    golden: Optional[Path] = typer.Option(None, help="Golden file (q, corpus_id/repo, expect_paths)"),
    qrels_split: str = typer.Option("", help="Qrels split to mine (default: training.train_split)"),
    target: Optional[str] = TargetOpt,
) -> None:
    """Mine triplets from events, a golden file or qrels (one new file per source)."""
    with status(console, f"mining {corpus_id} ({', '.join(source)})"):
        response = _call(target, "Mine", trainer_pb2.MineRequest(
            corpus_id=corpus_id, sources=source, golden_path=str(golden.resolve()) if golden else "",
            qrels_split=qrels_split))
    console.print(f"mining run [bold]{response.mining_run_id}[/bold]: "
                  + ", ".join(f"{k}: {v}" for k, v in response.triplets_by_source.items()))
    for f in response.files:
        console.print(f"  {f}")


def train(
    corpus_id: str = typer.Option(..., "--corpus-id"),
    start_from: str = typer.Option("champion", help="champion (fine-tune) or base (scratch)"),
    triplets: list[Path] = typer.Option([], "--triplets", help="Triplet files (default: the newest file of each source)"),
    set_: list[str] = typer.Option([], "--set", help="training.* override, e.g. --set epochs=2 or --set adapter.epochs=50"),
    follow: bool = typer.Option(True, help="Show a progress bar until the run ends"),
    offline: bool = typer.Option(
        False, "--offline",
        help="Train in this process on the data dir (no trainer service; the GPU training Job) and register the "
        "version as challenger in the registry; `feedrank promote` then gates it",
    ),
    target: Optional[str] = TargetOpt,
) -> None:
    """Start a training run (returns at once with its id; --follow streams its progress).

    With --offline the run happens here, in the foreground, on the data dir's mined triplets.
    """
    overrides = {}
    for item in set_:
        key, sep, value = item.partition("=")
        if not sep:
            console.print(f"[red]--set wants key=value, got {item!r}[/red]")
            raise typer.Exit(2)
        overrides[key.strip()] = value.strip()
    if offline:
        _train_offline(corpus_id, start_from, [str(p.resolve()) for p in triplets], overrides)
        return
    response = _call(target, "Train", trainer_pb2.TrainRequest(
        corpus_id=corpus_id, start_from=start_from, triplet_files=[str(p.resolve()) for p in triplets],
        overrides=overrides))
    console.print(f"run [bold]{response.run_id}[/bold] queued")
    if follow:
        run = _follow(target, response.run_id)
        _print_run(run)
        if run.status != trainer_pb2.RUN_STATUS_SUCCEEDED:
            raise typer.Exit(1)


def _train_offline(corpus_id: str, start_from: str, triplets: list[str], overrides: dict[str, str]) -> None:
    from services.trainer.core import TrainerCore

    settings = get_settings()
    core = TrainerCore(settings, recover_runs=False)
    try:
        run_id = core.train(corpus_id, start_from, triplets, overrides)
        console.print(f"run [bold]{run_id}[/bold] training in this process")
        record = core.wait(run_id)
    except FeedrankError as err:
        console.print(f"[red]train failed:[/red] {err}")
        raise typer.Exit(2) from err
    finally:
        core.close()
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in sorted(record.metrics.items()))
    console.print(f"run {run_id}: {record.status}" + (f", version [bold]{record.version_id}[/bold] is the challenger"
                                                      if record.version_id else f": {record.error}"))
    if metrics:
        console.print(metrics)
    if record.status != "succeeded":
        raise typer.Exit(1)


@runs_app.command("list")
def runs_list(corpus_id: str = typer.Option("", "--corpus-id"), target: Optional[str] = TargetOpt) -> None:
    """Every run, oldest first."""
    response = _call(target, "ListRuns", trainer_pb2.ListRunsRequest(corpus_id=corpus_id))
    table = Table("run", "corpus", "status", "created", "version", "train_loss", "dev nDCG@10")
    for r in response.runs:
        table.add_row(r.run_id, r.corpus_id, STATUS[r.status], r.created_at, r.version_id,
                      f"{r.metrics['train_loss']:.4f}" if "train_loss" in r.metrics else "",
                      f"{r.metrics['dev_ndcg@10']:.4f}" if "dev_ndcg@10" in r.metrics else "")
    console.print(table)


@runs_app.command("show")
def runs_show(run_id: str, follow: bool = typer.Option(False, help="Stream progress until it ends"),
              target: Optional[str] = TargetOpt) -> None:
    """One run's record (and its progress with --follow)."""
    _print_run(_follow(target, run_id) if follow else _call(target, "GetRun", trainer_pb2.GetRunRequest(run_id=run_id)))


@runs_app.command("cancel")
def runs_cancel(run_id: str, target: Optional[str] = TargetOpt) -> None:
    """Cancel a queued or running run."""
    run = _call(target, "CancelRun", trainer_pb2.CancelRunRequest(run_id=run_id))
    console.print(f"{run.run_id}: {STATUS[run.status]}")


@runs_app.command("diff")
def runs_diff(a: str, b: str, target: Optional[str] = TargetOpt) -> None:
    """Settings (where they differ), data and metrics of two runs side by side."""
    ra = _record(_call(target, "GetRun", trainer_pb2.GetRunRequest(run_id=a)))
    rb = _record(_call(target, "GetRun", trainer_pb2.GetRunRequest(run_id=b)))
    table = Table("", a, b, title="run diff")
    for section, rows in diff(ra, rb).items():
        for key, (left, right) in rows.items():
            fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else "" if v is None else str(v)  # noqa: E731
            table.add_row(f"{section} {key}", fmt(left), fmt(right))
    console.print(table)


def _record(run: trainer_pb2.Run) -> RunRecord:
    return RunRecord(run.run_id, run.corpus_id, "", STATUS[run.status], run.created_at, dict(run.settings),
                     list(run.triplet_files), finished_at=run.finished_at, error=run.error,
                     metrics=dict(run.metrics), version_id=run.version_id, base_model=run.base_model,
                     data=dict(run.data))


def evaluate(
    corpus_id: str = typer.Option(..., "--corpus-id"),
    challenger: str = typer.Option("", help="Version id or alias (default: challenger); 'fused' = no reranking"),
    champion: str = typer.Option("", help="Version id or alias (default: champion)"),
    target: Optional[str] = TargetOpt,
) -> None:
    """Champion vs challenger on the corpus's frozen evaluation set, with the paired test."""
    with status(console, f"evaluating on {corpus_id}'s frozen evaluation set"):
        r = _call(target, "Evaluate", trainer_pb2.EvaluateRequest(corpus_id=corpus_id, challenger=challenger,
                                                                  champion=champion))
    table = Table("metric", "champion", "challenger", title=f"evaluation {r.eval_id}")
    for key in sorted(r.champion_metrics):
        table.add_row(key, f"{r.champion_metrics[key]:.4f}", f"{r.challenger_metrics[key]:.4f}")
    console.print(table)
    console.print(f"nDCG@10 gain {r.ndcg_gain:+.4f}, p = {r.p_value:.4f} "
                  f"(details: $FEEDRANK_DATA_DIR/evals/{r.eval_id}.json)")


def _print_decision(r: trainer_pb2.PromoteResponse) -> None:
    verdict = "[green]promoted[/green]" if r.promoted else "[yellow]not promoted[/yellow]"
    console.print(f"{verdict}; champion: [bold]{r.champion}[/bold]\n{r.reason}")
    for k, v in sorted(r.numbers.items()):
        console.print(f"  {k}: {v:.4f}")


def promote(
    corpus_id: str = typer.Option(..., "--corpus-id", help="Corpus whose champion it becomes; its eval set decides"),
    version: str = typer.Option("", help="Version to promote (default: the corpus's challenger)"),
    force: bool = typer.Option(False, help="Skip the gate (recorded as forced)"),
    target: Optional[str] = TargetOpt,
) -> None:
    """Run the gate; on pass flip champion and publish the model-published event."""
    with status(console, f"gate on {corpus_id}" if not force else f"promoting on {corpus_id} (forced)"):
        decision = _call(target, "Promote", trainer_pb2.PromoteRequest(corpus_id=corpus_id, version_id=version,
                                                                       force=force))
    _print_decision(decision)


def rollback(corpus_id: str = typer.Option(..., "--corpus-id", help="Corpus whose champion rolls back "
                                           "(\"\" for the global scope of corpus-neutral versions)"),
             target: Optional[str] = TargetOpt) -> None:
    """Point the corpus's champion back at its previous champion (the registry keeps each corpus's history)."""
    _print_decision(_call(target, "Rollback", trainer_pb2.RollbackRequest(corpus_id=corpus_id)))


def decisions(corpus_id: str = typer.Option("", "--corpus-id", help="Only this corpus's decisions (default: all)"),
              last: int = typer.Option(20, help="Show the newest this many (the agreement counts them all)")) -> None:
    """The gate's history (offline, from the data dir): each decision's judge and numbers, the click judge's
    verdict beside the labelled one, and how often the two agree on the sign of a significant difference."""
    from services.trainer.gate import read_decisions
    from services.trainer.judges import agreement, describe_agreement

    history = [d for d in read_decisions(get_settings().data_path / "trainer" / "decisions.jsonl")
               if corpus_id in ("", d.get("corpus_id"))]
    table = Table("at", "corpus", "version", "judge", "gain", "p", "promoted", "click judge beside")
    for d in history[-last:]:
        n, beside = d.get("numbers") or {}, d.get("beside") or {}
        gain = n.get("ndcg_gain", n.get("ips_gain"))
        table.add_row(d.get("at", ""), d.get("corpus_id", ""), d.get("version_id", ""), d.get("judge", ""),
                      "" if gain is None else f"{gain:+.4f}", f"{n['p_value']:.4f}" if "p_value" in n else "",
                      "yes" if d.get("promoted") else "no",
                      (f"{beside['gain']:+.4f} (p={beside['p_value']:.4f}), "
                       f"{'same' if beside['same_sign'] else 'opposite'} sign") if beside.get("available")
                      else beside.get("reason", ""))
    console.print(table)
    console.print(describe_agreement(agreement(history)))


def _print_experiment(e: trainer_pb2.Experiment) -> None:
    console.print(f"experiment [bold]{e.experiment_id}[/bold] on {e.corpus_id}: [bold]{e.state}[/bold]; "
                  f"challenger {e.challenger_version} vs champion {e.champion_version or '(fused order)'}, "
                  f"share {e.share:g}, " + ("shadow (never shown)" if e.shadow else f"budget {e.query_budget}"))
    console.print(f"  queries {e.wins + e.losses + e.ties}: challenger won {e.wins}, champion won {e.losses}, "
                  f"ties {e.ties}; p = {e.p_value:.4g} (alpha {e.alpha:g})")
    if e.reason:
        console.print(f"  {e.reason}")


@experiment_app.command("start")
def experiment_start(
    corpus_id: str = typer.Option(..., "--corpus-id"),
    challenger: str = typer.Option("", help="Version to interleave (default: the challenger alias)"),
    share: Optional[float] = typer.Option(None, help="Share of Search traffic interleaved (default: "
                                          "interleaving.share)"),
    budget: int = typer.Option(0, help="Interleaved queries before it ends undecided (default: "
                               "interleaving.query_budget)"),
    shadow: bool = typer.Option(False, help="Score the challenger on the share of searches without showing it "
                                "(the retriever's feedrank_shadow_* metrics); runs until stopped"),
    target: Optional[str] = TargetOpt,
) -> None:
    """Start interleaving the corpus's champion with a challenger (or shadowing it)."""
    request = trainer_pb2.StartExperimentRequest(corpus_id=corpus_id, challenger_version=challenger,
                                                 query_budget=budget, shadow=shadow)
    if share is not None:
        request.share = share
    _print_experiment(_call(target, "StartExperiment", request, timeout=30))


@experiment_app.command("status")
def experiment_status(corpus_id: str = typer.Option(..., "--corpus-id"),
                      target: Optional[str] = TargetOpt) -> None:
    """The corpus's running experiment, else its latest: counts, p-value, verdict."""
    _print_experiment(_call(target, "GetExperiment", trainer_pb2.GetExperimentRequest(corpus_id=corpus_id), 30))


@experiment_app.command("stop")
def experiment_stop(corpus_id: str = typer.Option(..., "--corpus-id"),
                    reason: str = typer.Option("", help="Recorded with the experiment"),
                    target: Optional[str] = TargetOpt) -> None:
    """Stop the corpus's running experiment."""
    _print_experiment(_call(target, "StopExperiment",
                            trainer_pb2.StopExperimentRequest(corpus_id=corpus_id, reason=reason), 30))


def bootstrap(corpus_id: str = typer.Option(..., "--corpus-id", help="Corpus to train a v0 for")) -> None:
    """Train a v0 without feedback (training.bootstrap_sources), register it as challenger and run the gate.

    With training.recipe=query-adapter (the default) only the corpus's qrels train split is used.

    Offline: trains in this process on the data dir (talks to the retriever for hard negatives
    and evaluation candidates). Cached: a second call with the same corpus and settings reuses it.
    """
    from services.trainer.core import TrainerCore
    from services.trainer.gate import ModelPublisher

    settings = get_settings()
    core = TrainerCore(settings, publisher=ModelPublisher(settings.kafka))
    try:
        with status(console, "mining bootstrap data, then training (this takes minutes on a CPU)") as shown:
            result = core.bootstrap(corpus_id, on_run=lambda run_id: shown.update(f"training run {run_id}"))
    except FeedrankError as err:
        console.print(f"[red]bootstrap failed:[/red] {err}")
        raise typer.Exit(2) from err
    finally:
        core.close()
    decision = result["decision"]
    console.print(("reused cached " if result["cached"] else "trained ")
                  + f"v0 [bold]{result['version_id']}[/bold] (run {result['run_id']}, triplets {result['triplets']})")
    console.print((f"[green]promoted to {corpus_id}'s champion[/green]" if decision["promoted"] else
                   "[yellow]stays challenger[/yellow]") + f": {decision['reason']}")
    console.print(json.dumps(decision["numbers"], indent=2))


def register(app: typer.Typer) -> None:
    from services.registry.cli import model_app

    app.command("mine")(mine)
    app.command("train")(train)
    app.add_typer(runs_app, name="runs")
    app.add_typer(experiment_app, name="experiment")
    app.command("evaluate")(evaluate)
    app.command("promote")(promote)
    app.command("rollback")(rollback)
    model_app.command("bootstrap")(bootstrap)
    model_app.command("decisions")(decisions)
