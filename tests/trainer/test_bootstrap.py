"""`model bootstrap` (data sources -> run -> challenger -> gate, cached) and the unattended loop
(new events -> mine -> fine-tune from the champion -> gate), in-process on a tiny corpus."""

from __future__ import annotations

import json
import time

from services.common.config import LoopSettings
from services.events.store import EventStore
from services.trainer.core import TrainerCore
from services.trainer.gate import read_decisions
from tests.trainer.conftest import build_corpus, make_settings
from tests.trainer.test_mining import SHOWN, click, impression


def answer_set(root) -> None:
    """A general answer-selection set in the shared data's format."""
    folder = root / "mini"
    folder.mkdir(parents=True)
    with (folder / "rerank_train.jsonl").open("w") as fh:
        for i, (q, good, bad) in enumerate([("who wrote hamlet", "shakespeare wrote hamlet", "paris is in france"),
                                            ("boiling point of water", "water boils at 100 c", "cats purr"),
                                            ("largest planet", "jupiter is the largest planet", "bread needs yeast")]):
            # Like trecqa, the last question's candidates carry no ids.
            cands = [{"id": f"{i}a", "text": good, "label": 1}, {"id": f"{i}b", "text": bad, "label": 0}]
            if i == 2:
                cands = [{"text": c["text"], "label": c["label"]} for c in cands]
            fh.write(json.dumps({"qid": str(i), "query": q, "candidates": cands}) + "\n")


def test_bootstrap_is_cached_and_the_loop_fine_tunes_the_champion(data_dir):
    build_corpus(data_dir, bad_fused=True, extra_queries=["how do bees make honey"])
    answer_set(data_dir / "sets")
    settings = make_settings(data_dir, bootstrap_sources=["qrels", "mini", "wikiqa"], answer_sets_dir=str(data_dir / "sets"),
                             bootstrap_max_per_source=5, max_steps=2, gate={"max_p": 0.5},
                             loop=LoopSettings(every_events=2, check_s=0.2))
    core = TrainerCore(settings)
    try:
        first = core.bootstrap("tiny")
        assert not first["cached"] and first["triplets"] == {"qrels": 5, "mini": 3}
        assert [m.split(":")[0] for m in first["missing_sources"]] == ["wikiqa"]  # not in this answer_sets_dir
        run = core.get_run(first["run_id"])
        assert run.kind == "bootstrap" and run.status == "succeeded" and run.data["by_source"] == {"qrels": 5, "mini": 3}
        decision = first["decision"]
        assert decision["version_id"] == first["version_id"] and "ndcg_gain" in decision["numbers"]
        assert decision["promoted"], decision["reason"]
        assert core.registry.aliases("tiny")["champion"] == first["version_id"]

        second = core.bootstrap("tiny")
        assert second["cached"] and second["version_id"] == first["version_id"]
        assert len(core.list_runs()) == 1

        # The unattended loop: two new feedback events trigger mine -> train (from the champion) -> gate.
        core.start_loop()
        events = EventStore.open(settings)
        events.add([impression(f"q{i}", "how do bees make honey", SHOWN) for i in range(4)]
                   + [click(f"q{i}", "bees-0", 3, 30_000) for i in range(4)])
        deadline = time.monotonic() + 240
        while len(read_decisions(data_dir / "trainer" / "decisions.jsonl")) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        decisions = read_decisions(data_dir / "trainer" / "decisions.jsonl")
        assert len(decisions) == 2, [r.status for r in core.list_runs()]
        looped = core.list_runs()[-1]
        assert looped.status == "succeeded" and looped.settings["start_from"] == "champion"
        assert looped.base_model.startswith(first["version_id"])  # fine-tuned from the champion's weights
        assert looped.data["by_source"]["events"] == 4
        assert decisions[1]["version_id"] == looped.version_id
    finally:
        core.close()
