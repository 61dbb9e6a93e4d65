"""Progress of long commands, on a terminal and off it.

On a terminal, rich draws its bars and spinners. Anywhere else (CI, a Kubernetes Job's log,
`nohup`, `make demo > log`) rich draws nothing, so the same calls print plain lines instead:

    [progress] ingest scifact: 1250/5183 (24%) 410.3/s ETA 9s
    [progress] gate: challenger vs champion: running 40s

A task prints a line each time it passes another 5% of its total, and every task or status still
open prints one at least every 10 seconds, even when nothing advances (a heartbeat thread), so a
log never goes quiet for longer while work is under way (`progress.share`, `progress.interval_s`).

`progress(console)` stands in for `rich.progress.Progress` (add_task / advance / update, and
`.console` for lines between updates); `status(console, text)` for `console.status(text)`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from services.common.config import get_settings



@dataclass
class _Task:
    description: str
    total: float | None
    completed: float = 0.0
    info: str = ""
    started: float = field(default_factory=time.monotonic)
    bucket: int = 0  # how many shares of the total were already reported

    def line(self, final: bool = False) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        text = f"[progress] {self.description}:"
        if self.total:
            done = min(self.completed / self.total, 1.0)
            rate = self.completed / elapsed
            eta = (self.total - self.completed) / rate if rate > 0 else None
            text += f" {self.completed:.0f}/{self.total:.0f} ({done:.0%}) {rate:.1f}/s"
            text += f" ETA {_duration(eta)}" if eta is not None else " ETA ?"
        elif self.completed:
            text += f" {self.completed:.0f} done, {self.completed / elapsed:.1f}/s"
        text += f" {'done in' if final else 'running'} {_duration(elapsed)}" if not self.total else ""
        return f"{text} {self.info}".rstrip()


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes}m{seconds:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


class PlainProgress:
    """rich.progress.Progress's add_task/advance/update, printed as plain lines (see the module doc)."""

    def __init__(self, console: Console, *, interval_s: float, share: float):
        self.console = console
        self.interval_s = interval_s
        self.share = share
        self._tasks: dict[int, _Task] = {}
        self._lock = threading.Lock()
        self._last_line = time.monotonic()
        self._stop = threading.Event()
        self._heartbeat = threading.Thread(target=self._beat, name="progress-heartbeat", daemon=True)

    def __enter__(self) -> PlainProgress:
        self._heartbeat.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._heartbeat.join()
        with self._lock:
            for task in self._tasks.values():
                if not task.total or task.bucket < round(1 / self.share):  # the last line shows where it ended
                    self._print(task.line(final=True))

    def add_task(self, description: str, total: float | None = None, **fields: Any) -> int:
        with self._lock:
            task_id = len(self._tasks)
            self._tasks[task_id] = _Task(description, total, info=str(fields.get("info", "")))
            self._print(self._tasks[task_id].line())
            return task_id

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def update(self, task_id: int, *, total: float | None = None, completed: float | None = None,
               advance: float | None = None, description: str | None = None, **fields: Any) -> None:
        with self._lock:
            task = self._tasks[task_id]
            task.total = task.total if total is None else total
            task.completed = task.completed if completed is None else completed
            task.completed += advance or 0
            task.description = description or task.description
            task.info = str(fields.get("info", task.info))
            if task.total:
                bucket = int(min(task.completed / task.total, 1.0) / self.share + 1e-9)
                if bucket > task.bucket:
                    task.bucket = bucket
                    self._print(task.line())

    def _print(self, line: str) -> None:  # callers hold the lock
        self.console.file.write(line + "\n")
        self.console.file.flush()
        self._last_line = time.monotonic()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval_s / 4):
            with self._lock:
                if time.monotonic() - self._last_line >= self.interval_s:
                    for task in self._tasks.values():
                        self._print(task.line())


def progress(console: Console, *columns: Any, interval_s: float | None = None,
             share: float | None = None) -> Progress | PlainProgress:
    """On a terminal a rich bar with `columns` (default: description, bar, done/total, elapsed, ETA);
    plain lines elsewhere, every `interval_s` and `share` (default: the `progress.*` settings)."""
    if console.is_terminal:
        columns = columns or (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                              TimeElapsedColumn(), TimeRemainingColumn())
        return Progress(*columns, console=console)
    configured = get_settings().progress
    return PlainProgress(console, interval_s=interval_s or configured.interval_s, share=share or configured.share)


class _PlainStatus:
    def __init__(self, bar: PlainProgress, task_id: int):
        self._bar, self._task_id = bar, task_id

    def update(self, status: str) -> None:
        self._bar.update(self._task_id, description=status)


@contextmanager
def status(console: Console, text: str, *, interval_s: float | None = None) -> Iterator[Any]:
    """console.status(text) on a terminal; elsewhere a line now, then one at least every `interval_s`
    with the time it has been running. `.update(text)` changes the text either way."""
    if console.is_terminal:
        with console.status(text) as spinner:
            yield spinner
        return
    configured = get_settings().progress
    with PlainProgress(console, interval_s=interval_s or configured.interval_s, share=configured.share) as bar:
        yield _PlainStatus(bar, bar.add_task(text))
