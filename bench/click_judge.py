"""Click judge benchmark: the cost of one gate decision by clicks on the demo's sessions.

Replays the last click-judged gate decision of `make demo JUDGE=clicks` (its challenger against the
champion it faced) on the demo's data dir: measuring the propensities (with their bootstrap), selecting
the held-out sessions, ranking their queries with both models as served, IPS and the paired test.
The candidate lists come from the evaluation cache the gate wrote, so no service needs to run.
Reports seconds per decision (median of --repeat) and the process's peak resident memory, and writes
bench/results/click_judge.json. Without the demo's data it says so and exits.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rich.console import Console  # noqa: E402

from services.common.config import Settings  # noqa: E402
from services.events.store import EventStore  # noqa: E402
from services.registry.store import open_registry  # noqa: E402
from services.trainer.candidates import open_candidates  # noqa: E402
from services.trainer.click_judge import ClickJudge  # noqa: E402
from services.trainer.evaluation import Evaluator  # noqa: E402
from services.trainer.gate import read_decisions  # noqa: E402

console = Console()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO / "data", help="the data dir `make demo JUDGE=clicks` used")
    parser.add_argument("--corpus-id", default="", help="default: the corpus of the last click-judged decision")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "click_judge.json")
    args = parser.parse_args()
    decisions = [d for d in read_decisions(args.data_dir / "trainer" / "decisions.jsonl")
                 if d.get("judge") == "clicks" and (not args.corpus_id or d["corpus_id"] == args.corpus_id)]
    if not decisions:
        console.print(f"skipped: no click-judged gate decision under {args.data_dir} (run `make demo JUDGE=clicks` first)")
        return
    decision = decisions[-1]
    corpus_id = decision["corpus_id"]
    base = Settings(data_dir=str(args.data_dir))
    settings = base.replace(training=base.training.model_copy(update={"judge": "clicks"}))
    # The sessions that decision judged: the same candidate lists, found in the gate's evaluation cache.
    until_ms = json.loads((args.data_dir / "evals" / f"{decision['eval_id']}.json").read_text())["until_ms"]
    events = EventStore.open(settings, read_only=True)
    candidates = open_candidates(settings)
    judge = ClickJudge(settings, events, Evaluator(settings, open_registry(settings.registry_path), candidates))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seconds, record = [], {}
    try:
        for _ in range(args.repeat):
            started = time.perf_counter()
            record = judge.evaluate(corpus_id, decision["version_id"], decision["champion_before"], save=False,
                                    until_ms=until_ms)
            seconds.append(time.perf_counter() - started)
    finally:
        candidates.close()
        events.close()
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": platform.platform(),
        "corpus_id": corpus_id, "challenger": decision["version_id"], "champion": decision["champion_before"],
        "sessions": record["sessions"], "searches": record["searches"], "clicks": record["clicks"],
        "seconds_per_decision": statistics.median(seconds), "seconds": seconds,
        "peak_rss_mib": round(peak_mib, 1), "rss_before_mib": round(rss_before / 1024, 1),
        "gain": record["gain"], "p_value": record["p_value"],
    }
    console.print(f"click judge on {corpus_id}: {record['sessions']} held-out sessions ({record['searches']} searches, "
                  f"{record['clicks']} clicks): {result['seconds_per_decision']:.2f}s per gate decision "
                  f"(median of {args.repeat}), peak RSS {peak_mib:.0f} MiB")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
