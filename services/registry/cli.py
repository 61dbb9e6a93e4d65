"""`feedrank model ...`: register and list model versions (offline, on the registry folder)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from services.common.config import get_settings
from services.common.errors import FeedrankError
from services.registry.store import open_registry

model_app = typer.Typer(no_args_is_help=True, help="Model versions in the registry (offline: works on the registry folder)")
console = Console()


@model_app.command("import")
def import_cmd(
    source: Path = typer.Argument(..., help="Hugging Face cross-encoder folder"),
    alias: Optional[str] = typer.Option(None, help="Point this alias (champion/challenger) at the new version"),
    max_length: Optional[int] = typer.Option(None, help="Token limit to serve with (default: the model's)"),
) -> None:
    """Export a cross-encoder to ONNX, smoke-test it and register it as a new version."""
    from services.registry.importer import import_model

    settings = get_settings()
    try:
        with console.status(f"exporting {source} to ONNX"):
            manifest = import_model(
                open_registry(settings.registry_path), source, settings.engine, alias=alias, max_length=max_length
            )
    except FeedrankError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from err
    console.print(f"registered [bold]{manifest.version_id}[/bold]" + (f" as {alias}" if alias else ""))


@model_app.command("list")
def list_cmd() -> None:
    """Versions, their metrics and the aliases pointing at them."""
    registry = open_registry(get_settings().registry_path)
    aliases = registry.aliases()
    table = Table("version", "aliases", "kind", "base", "run", "created", "nDCG@10")
    for m in registry.versions():
        names = ",".join(a for a, v in aliases.items() if v == m.version_id)
        ndcg = m.metrics.get("ndcg@10")
        table.add_row(m.version_id, names, m.kind, Path(m.base_model).name, m.run_id, m.created_at,
                      f"{ndcg:.4f}" if isinstance(ndcg, (int, float)) else "")
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(model_app, name="model")
