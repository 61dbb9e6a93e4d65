"""`feedrank up`: the broker and every service on the embedded default, in the foreground."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from services.common.config import get_settings
from services.common.errors import FeedrankError
from services.devstack.stack import WITH_GATEWAY, LocalStack

console = Console()


def up(
    data_dir: Path = typer.Option(None, help="Data folder (default: FEEDRANK_DATA_DIR)"),
    durable: bool = typer.Option(False, help="Kafka on SeaweedFS S3 storage instead of memory"),
) -> None:
    """Start the Tansu broker, the four services and the gateway (http://127.0.0.1:8000/) on their default
    ports; Ctrl-C stops them all."""
    stack = LocalStack(data_dir or get_settings().data_path, default_ports=True, durable_kafka=durable,
                       services=WITH_GATEWAY)
    try:
        with console.status("starting the broker and the services"):
            stack.start()
    except FeedrankError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(1) from err
    table = Table("service", "address", "log")
    table.add_row("kafka (tansu)", stack.kafka.bootstrap_servers, str(stack.data_dir / "kafka"))
    for p in stack.processes.values():
        table.add_row(p.name, p.target, str(p.log_path))
    console.print(table)
    if stack.admin_token_created:
        console.print(f"admin token (shown once; kept in {stack.admin_token_path}, mode 0600):\n  {stack.admin_token}")
    console.print("Admin calls (train, promote, rollback, config, evaluate) need the admin token: the CLI finds it "
                  "itself; HTTP clients send Authorization: Bearer <token>; the console has a token field.")
    console.print("Ctrl-C stops everything.")
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        while not stopped.wait(1):
            dead = [p.name for p in stack.processes.values() if not p.alive()]
            if dead:
                console.print(f"[red]exited:[/red] {', '.join(dead)}; see their logs")
                break
    except KeyboardInterrupt:
        pass
    finally:
        with console.status("stopping"):
            stack.stop()


def register(app: typer.Typer) -> None:
    app.command("up")(up)
