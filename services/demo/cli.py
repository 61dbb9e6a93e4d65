"""`feedrank demo`: the whole learning loop on a BEIR dataset (see services/demo/run.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from services.common.config import get_settings
from services.common.errors import FeedrankError

DEFAULT_DATASET = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "scifact"


def demo(
    dataset: Path = typer.Option(DEFAULT_DATASET, help="BEIR dataset folder"),
    quick: bool = typer.Option(False, "--quick", help="A smaller corpus and fewer sessions (minutes, not tens)"),
    noise: Optional[float] = typer.Option(None, help="Share of random clicks and wrong thumbs (default demo.noise)"),
    judge: Optional[str] = typer.Option(None, help="labels or clicks: who judges the loop (default demo.judge)"),
    seeds: Optional[str] = typer.Option(None, help="Run once per seed ('13,14,15', or a count from 13) and report "
                                        "each figure's median and range (services/demo/seeds.py)"),
) -> None:
    """Ingest, bootstrap, simulate users, learn from their feedback through Kafka, hot-swap, measure."""
    from services.demo import seeds as by_seed
    from services.demo.run import Demo, console

    try:
        settings = get_settings()
        run = Demo(settings, dataset, quick=quick, noise=noise, judge=judge)
        if seeds is not None:
            by_seed.run_seeds(by_seed.parse_seeds(seeds), settings.data_path / "demo-seeds" / run.corpus_id,
                              run.out_dir.with_name(f"{run.corpus_id}-seeds"),
                              by_seed.run_in_process(dataset, quick, noise, judge), share_ingest=not quick,
                              console=console)
            return
        outcome = run.run()
    except FeedrankError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from err
    failed = outcome.simulation.get("failed_searches", 0) + outcome.simulation.get("failed_feedback", 0)
    if failed:
        typer.echo(f"{failed} simulated requests failed: {outcome.simulation['errors']}", err=True)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
