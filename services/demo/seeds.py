"""`feedrank demo --seeds 13,14,15`: the demo once per seed, and each figure as the median with its range.

One run is one draw: the seed picks the gate's held-out queries, v0's labelled queries, the simulated users'
clicks and the training order, and a second run of the same command on a slower machine has landed 0.02 away.
Each seed runs as its own `feedrank demo` process (`training.seed` and the data dir in its environment, so no
state is shared) in `<data dir>/demo-seeds/<corpus id>/seed-<seed>/`; a full (not quick) run copies the first
seed's ingested corpus and exported embedder to the others, whose ingest then skips every unchanged document
(a quick run's corpus sample depends on the seed, so each ingests its own). The summary is written beside the
single runs: `<data dir>/demo/<corpus id>-seeds/seeds.{json,md,png}`.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from services.common.errors import invalid

MAX_SEEDS = 10
METRICS = ("ndcg@10", "mrr@10", "recall@100", "hit@1")

RunSeed = Callable[[int, Path], Path]  # (seed, its data dir) -> that run's demo.json


def parse_seeds(text: str) -> list[int]:
    """'13,14,15' -> [13, 14, 15]; a count ('3') means that many seeds from 13, the demo's default."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise invalid("seeds", f"expected a count or comma-separated integers, got {text!r}") from None
    if not values:
        raise invalid("seeds", "expected a count or comma-separated integers, got nothing")
    seeds = list(range(13, 13 + values[0])) if len(values) == 1 else values
    if not 2 <= len(seeds) <= MAX_SEEDS or len(set(seeds)) != len(seeds):
        raise invalid("seeds", f"expected 2 to {MAX_SEEDS} distinct seeds, got {text!r}")
    return seeds


def summarise(runs: dict[int, dict]) -> dict[str, dict[str, dict[str, float]]]:
    """Per ranking and metric: the median over the seeds' demo.json rows, its min and max, and each value."""
    names = [name for name in next(iter(runs.values()))["rows"] if all(name in r["rows"] for r in runs.values())]
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for name in names:
        summary[name] = {}
        for metric in METRICS:
            values = [r["rows"][name].get(metric) for r in runs.values()]
            if any(v is None for v in values):
                continue
            summary[name][metric] = {"median": statistics.median(values), "min": min(values), "max": max(values),
                                     "by_seed": dict(zip(map(str, runs), values))}
    return summary


def run_in_process(dataset: Path, quick: bool, noise: float | None, judge: str | None) -> RunSeed:
    """A runner that starts `feedrank demo` for one seed with its own data dir."""
    def run(seed: int, data_dir: Path) -> Path:
        command = [sys.executable, "-m", "services.cli", "demo", "--dataset", str(dataset)]
        command += ["--quick"] if quick else []
        command += ["--noise", str(noise)] if noise is not None else []
        command += ["--judge", judge] if judge else []
        env = {**os.environ, "FEEDRANK_DATA_DIR": str(data_dir), "FEEDRANK_TRAINING__SEED": str(seed)}
        subprocess.run(command, env=env, check=True)
        return next((data_dir / "demo").glob("*/demo.json"))
    return run


def seed_dirs(root: Path, seeds: Sequence[int]) -> dict[int, Path]:
    return {seed: root / f"seed-{seed}" for seed in seeds}


def reuse_ingest(first: Path, later: Path) -> None:
    """The first seed's ingested corpora and exported embedder, copied to a later seed's data dir."""
    for part in ("corpora", "models"):
        if (first / part).is_dir() and not (later / part).exists():
            shutil.copytree(first / part, later / part)


def run_seeds(seeds: Sequence[int], root: Path, out_dir: Path, run_seed: RunSeed, *, share_ingest: bool,
              console: Console) -> dict:
    """Each seed's demo in turn, then the summary written to `out_dir` and printed."""
    dirs = seed_dirs(root, seeds)
    runs: dict[int, dict] = {}
    for index, (seed, data_dir) in enumerate(dirs.items()):
        console.print(f"[progress] seed {seed} ({index + 1}/{len(dirs)}): {data_dir}")
        data_dir.mkdir(parents=True, exist_ok=True)
        if share_ingest and index:
            reuse_ingest(dirs[seeds[0]], data_dir)
        runs[seed] = json.loads(run_seed(seed, data_dir).read_text())
    payload = {"seeds": list(seeds), "summary": summarise(runs), "runs": {str(s): str(d) for s, d in dirs.items()},
               "promoted": {str(s): r["rows"].get("fused+learned", {}).get("version_id") for s, r in runs.items()}}
    write(out_dir, payload, console)
    return payload


def _cell(stat: dict[str, float]) -> str:
    return f"{stat['median']:.4f} ({stat['min']:.4f}-{stat['max']:.4f})"


def write(out_dir: Path, payload: dict, console: Console) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    summary, seeds = payload["summary"], payload["seeds"]
    title = f"median (min-max) over seeds {', '.join(map(str, seeds))}"
    table = Table("ranking", *METRICS, title=title)
    lines = [f"### {title}", "", "| ranking | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    for name, metrics in summary.items():
        cells = [_cell(metrics[m]) if m in metrics else "-" for m in METRICS]
        table.add_row(name, *cells)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    console.print(table)
    (out_dir / "seeds.json").write_text(json.dumps(payload, indent=2))
    (out_dir / "seeds.md").write_text("\n".join(lines) + "\n")
    plot(out_dir / "seeds.png", summary, title)
    console.print(f"wrote {out_dir / 'seeds.json'}, {out_dir / 'seeds.md'}, {out_dir / 'seeds.png'}")


def plot(path: Path, summary: dict, title: str) -> None:
    """nDCG@10 per ranking: each seed a dot, the median a bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in summary if "ndcg@10" in summary[n]]
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 2, 4))
    for x, name in enumerate(names):
        stat = summary[name]["ndcg@10"]
        ax.bar(x, stat["median"], color="#9ecae1")
        ax.scatter([x] * len(stat["by_seed"]), list(stat["by_seed"].values()), color="#08519c", zorder=3, s=14)
    ax.set_xticks(range(len(names)), names)
    low = min(min(summary[n]["ndcg@10"]["by_seed"].values()) for n in names)
    ax.set_ylim(max(0.0, low - 0.05), None)
    ax.set_ylabel("nDCG@10 (test)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
