"""`feedrank`: the one operator CLI. Each stage adds its verbs through its own `cli.register`."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from services.common.config import describe

app = typer.Typer(no_args_is_help=True, help="feedrank: hybrid search with a reranker that learns from its users")


@app.command("config")
def show_config() -> None:
    """Print every setting: environment variable, default and meaning (offline)."""
    table = Table("env var", "default", "meaning")
    for env, default, meaning in describe():
        table.add_row(env, default, meaning)
    Console().print(table)


def _register_stages() -> None:
    from services.demo import cli as demo_cli

    demo_cli.register(app)

    from services.devstack import cli as devstack_cli

    devstack_cli.register(app)

    from services.feedback import cli as feedback_cli

    feedback_cli.register(app)

    from services.registry import cli as registry_cli

    registry_cli.register(app)

    from services.retriever import cli as retriever_cli

    retriever_cli.register(app)

    from services.trainer import cli as trainer_cli

    trainer_cli.register(app)


_register_stages()

if __name__ == "__main__":
    app()
