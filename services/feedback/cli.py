"""`feedrank events stats`: what the trainer's event store holds (offline: reads the data dir)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from services.common.config import get_settings
from services.events.store import EventStore, store_path

events_app = typer.Typer(no_args_is_help=True, help="Feedback events in the trainer's event store (offline)")
console = Console()


@events_app.command("stats")
def stats_cmd(
    data_dir: Optional[Path] = typer.Option(None, help="Deployment data dir (default: FEEDRANK_DATA_DIR)"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table"),
) -> None:
    """Event counts by kind, corpus and day. Offline: reads the event store under the data dir
    (works whether or not the services run; shows what the consumer has written so far)."""
    settings = get_settings()
    path = store_path(settings.model_copy(update={"data_dir": str(data_dir)}) if data_dir else settings)
    try:
        store = EventStore(path, read_only=True)
    except FileNotFoundError:
        console.print(f"[red]error:[/red] no event store at {path}: no event has been consumed yet")
        raise typer.Exit(2) from None
    rows, rejected = store.stats(), store.rejected_count()
    store.close()
    totals: dict[str, int] = defaultdict(int)
    for row in rows:
        totals[row.kind] += row.count
    if as_json:
        print(json.dumps({"store": str(path), "totals": totals, "rejected": rejected,
                          "rows": [row.__dict__ for row in rows]}, indent=2))
        return
    table = Table("day (UTC)", "corpus", "kind", "events", title=str(path))
    for row in rows:
        table.add_row(row.day, row.corpus_id or "(impression not seen)", row.kind, str(row.count))
    console.print(table)
    summary = ", ".join(f"{kind}: {n}" for kind, n in sorted(totals.items())) or "no events"
    console.print(f"total {sum(totals.values())} ({summary}); unparseable records kept aside: {rejected}")


def register(app: typer.Typer) -> None:
    app.add_typer(events_app, name="events")
