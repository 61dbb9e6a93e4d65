"""The demo's results: a table on the terminal, JSON and Markdown files, and a PNG plot."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from services.trainer import propensity as position_bias
from services.trainer.judges import agreement, describe_agreement

COLUMNS = ("ndcg@10", "mrr@10", "recall@100", "hit@1", "search_p50_ms", "search_p99_ms")
HEADERS = ("nDCG@10", "MRR@10", "Recall@100", "Hit@1", "search p50 ms", "search p99 ms")


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if isinstance(value, float) and value > 1.5 else f"{value:.4f}"


def print_table(rows: dict[str, dict], title: str, console: Console | None = None) -> None:
    table = Table("ranking", *HEADERS, title=title)
    for name, metrics in rows.items():
        table.add_row(name, *(_fmt(metrics.get(c)) for c in COLUMNS))
    (console or Console()).print(table)


def markdown(rows: dict[str, dict], title: str) -> str:
    lines = [f"### {title}", "", "| ranking | " + " | ".join(HEADERS) + " |", "|---" * (len(HEADERS) + 1) + "|"]
    for name, metrics in rows.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(metrics.get(c)) for c in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def write(out_dir: Path, payload: dict, rows: dict[str, dict], title: str) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "demo.json", "markdown": out_dir / "demo.md", "plot": out_dir / "demo.png"}
    paths["json"].write_text(json.dumps(payload, indent=2, default=str))
    paths["markdown"].write_text(markdown(rows, title))
    plot(paths["plot"], payload.get("versions", []), payload.get("training_loss", []), rows)
    return paths


def plot(path: Path, versions: list[dict], losses: list[dict], rows: dict[str, dict]) -> None:
    """Left: nDCG@10 of each model version on the test queries, the fused order as a line.
    Right: training loss per step of the runs the loop made."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    names = [v["label"] for v in versions]
    values = [v["ndcg@10"] for v in versions]
    left.bar(names, values, color=["#999999" if v.get("promoted") is False else "#2a7ab9" for v in versions])
    fused = rows.get("fused", {}).get("ndcg@10")
    if fused is not None:
        left.axhline(fused, color="#d62728", linestyle="--", label=f"fused order {fused:.3f}")
        left.legend(loc="lower right")
    if values:
        low = min(values + ([fused] if fused else []))
        left.set_ylim(max(0.0, low - 0.05), min(1.0, max(values + ([fused] if fused else [])) + 0.03))
    left.set_title("nDCG@10 on test queries, per model version")
    left.tick_params(axis="x", rotation=20)
    for run in losses:
        steps = [p["step"] for p in run["points"]]
        right.plot(steps, [p["value"] for p in run["points"]], label=f"{run['step']} run {run['run_id']}")
    right.set_title("training loss")
    right.set_xlabel("step")
    if losses:
        right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_propensities(out_dir: Path, propensities: dict, console: Console | None = None) -> dict[str, Path]:
    """The measured propensities beside the simulated users' true examination: a table, Markdown and a plot."""
    truth = dict(zip(propensities["ranks"], propensities["true"]))
    measured = position_bias.Propensities(**{k: v for k, v in propensities.items()
                                             if k in position_bias.Propensities.__dataclass_fields__})
    table = Table("rank", "estimated", "95% interval", "true examination", "relative error",
                  title=f"position bias: {measured.intervened} shuffled searches of {measured.searches}")
    lines = ["### Position bias: estimated vs the simulator's true examination", "",
             "| rank | estimated | 95% interval | true | relative error |", "|---|---|---|---|---|"]
    for r, est, lo, hi in zip(measured.ranks, measured.propensity, measured.ci_low, measured.ci_high):
        cells = (str(r), _num(est), f"{_num(lo)}-{_num(hi)}", f"{truth[r]:.3f}",
                 "-" if est is None else f"{(est - truth[r]) / truth[r]:+.1%}")
        table.add_row(*cells)
        lines.append("| " + " | ".join(cells) + " |")
    summary = propensity_summary(measured, truth)
    if propensities.get("stop_after_relevant"):
        # Cascading users: 1/r is their examination while still browsing, above the rate a shuffle sees.
        summary += (f"\nthe users stop after a satisfying click (stop_after_relevant="
                    f"{propensities['stop_after_relevant']:g}): 'true' is their examination while still browsing")
    (console or Console()).print(table)
    (console or Console()).print(summary)
    paths = {"propensity_markdown": out_dir / "propensity.md", "propensity_plot": out_dir / "propensity.png"}
    paths["propensity_markdown"].write_text("\n".join(lines) + "\n\n" + summary + "\n")
    position_bias.plot(paths["propensity_plot"], measured, truth)
    return paths


def propensity_summary(measured, truth: dict[int, float], ranks: int = 10) -> str:
    """The acceptance view of the estimate: the largest relative error and interval width over ranks 1..`ranks`."""
    rows = [(r, est, lo, hi) for r, est, lo, hi in
            zip(measured.ranks, measured.propensity, measured.ci_low, measured.ci_high) if r <= ranks]
    if any(est is None for _, est, _, _ in rows):
        return f"ranks 1-{ranks}: not all estimated"
    worst = max(rows, key=lambda row: abs(row[1] - truth[row[0]]) / truth[row[0]])
    widths = [(hi - lo) / truth[r] for r, _, lo, hi in rows[1:]]
    return (f"ranks 1-{ranks}: largest relative error {(worst[1] - truth[worst[0]]) / truth[worst[0]]:+.1%} "
            f"(rank {worst[0]}); 95% intervals {min(widths):.0%}-{max(widths):.0%} of the true value wide; "
            f"smoothing weight {measured.smoothing:g} (cross-validated)")


def print_agreement(judging: list[dict], console: Console | None = None) -> None:
    """Each gate decision's judge and numbers, the click judge's beside the labelled one, and their agreement."""
    out = console or Console()
    for d in judging:
        n = d.get("numbers") or {}
        gain = n.get("ips_gain", n.get("ndcg_gain"))
        line = f"gate on {d['version_id']}: {d['judge']} judge, gain {gain:+.4f} (p={n.get('p_value', 1.0):.4f})" \
            if gain is not None else f"gate on {d['version_id']}: {d['judge']} judge"
        beside = d.get("beside") or {}
        clicks = n  # the click judge's numbers: the decision's own, or those beside the labelled verdict
        if beside.get("available"):
            line += f"; click judge beside it: {beside['gain']:+.4f} (p={beside['p_value']:.4f})"
            clicks = beside.get("numbers") or {}
        elif beside:
            line += f"; click judge not available: {beside.get('reason', '')}"
        if "judged_queries" in clicks:
            line += "; " + holdout_summary(clicks)
        out.print(line)
    a = agreement(judging)
    if a["challengers"]:  # a run judged by clicks alone has no labelled verdict to agree with
        out.print(describe_agreement(a))


def holdout_summary(numbers: dict) -> str:
    """What the click judge's holdout kept apart: judged queries are never mined, learned ones never judged."""
    return (f"click judge on {numbers['sessions']:.0f} sessions of {numbers['judged_queries']:.0f} judged queries "
            f"({numbers['kept_from_mining']:.0f} searches of them outside the held-out sessions kept from mining, "
            f"{numbers['learned_dropped']:.0f} held-out searches of queries first searched in a mined session "
            "dropped from judging)")


def _num(value) -> str:
    return "-" if value is None else f"{value:.3f}"
