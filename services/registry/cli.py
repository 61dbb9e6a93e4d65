"""`feedrank model ...`: register and list model versions (offline, on the registry folder)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from services.common.config import get_settings
from services.common.errors import FeedrankError
from services.registry.store import ALIASES, open_registry, scope_name

model_app = typer.Typer(no_args_is_help=True, help="Model versions in the registry (offline: works on the registry folder)")
console = Console()


@model_app.command("import")
def import_cmd(
    source: Path = typer.Argument(..., help="Hugging Face cross-encoder folder"),
    alias: Optional[str] = typer.Option(None, help="Point this alias (champion/challenger/previous) at the new version"),
    corpus: str = typer.Option("", "--corpus-id", help="Corpus whose alias it is (default: the global scope, which "
                               "serves every corpus without an alias of its own)"),
    max_length: Optional[int] = typer.Option(None, help="Token limit to serve with (default: the model's)"),
) -> None:
    """Export a cross-encoder to ONNX, smoke-test it and register it as a new version."""
    from services.registry.importer import import_model

    settings = get_settings()
    try:
        with console.status(f"exporting {source} to ONNX"):
            manifest = import_model(
                open_registry(settings.registry_path), source, settings.engine, alias=alias, corpus_id=corpus,
                max_length=max_length,
            )
    except FeedrankError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from err
    console.print(f"registered [bold]{manifest.version_id}[/bold]" + (f" as {alias} of {scope_name(corpus)}"
                                                                       if alias else ""))


@model_app.command("list")
def list_cmd() -> None:
    """Each corpus's aliases, then the versions with the corpus each was trained for and their metrics."""
    registry = open_registry(get_settings().registry_path)
    scopes = registry.all_aliases()
    aliases = Table("corpus", *ALIASES, title="aliases (a corpus without its own uses global's)")
    for scope in sorted(scopes):
        aliases.add_row(scope_name(scope), *(scopes[scope].get(alias, "") for alias in ALIASES))
    console.print(aliases)
    table = Table("version", "corpus", "kind", "base", "run", "created", "nDCG@10")
    for m in registry.versions():
        ndcg = m.metrics.get("ndcg@10")
        table.add_row(m.version_id, m.corpus_id or "(any)", m.kind, Path(m.base_model).name, m.run_id, m.created_at,
                      f"{ndcg:.4f}" if isinstance(ndcg, (int, float)) else "")
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(model_app, name="model")
