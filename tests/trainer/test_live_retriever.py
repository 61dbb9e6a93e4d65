"""Mining and evaluation candidates from the real retriever (gRPC Search, rerank mode "none")
on the retriever tests' twelve-document corpus: the same interface the file source stands in for."""

from __future__ import annotations

import asyncio
import json
import shutil

from services.common.config import EndpointSettings, Settings
from services.events.store import EventStore
from services.registry.store import FileRegistry
from services.retriever.core import RetrieverCore
from services.retriever.server import build_app
from services.trainer.candidates import RetrieverCandidates, open_candidates
from services.trainer.corpus_data import CorpusData, eval_set
from services.trainer.evaluation import Evaluator
from services.trainer.mining import Miner, load_triplets
from tests.conftest import free_port
from tests.retriever.conftest import DOCS
from tests.trainer.conftest import tiny_training

QUERIES = {"t1": "pets that purr", "t2": "lava from a volcano", "e1": "loans secured by a house", "e2": "sorting an array"}
QRELS = {"train": {"t1": "cat-1", "t2": "vol-1"}, "test": {"e1": "bank-2", "e2": "code-1"}}


def test_hard_negatives_and_eval_candidates_from_the_live_retriever(data_dir, embedder_dir, embedder):  # noqa: F811
    shutil.copytree(embedder_dir, data_dir / "models" / "embedder")
    port = free_port()
    settings = Settings(
        data_dir=str(data_dir),
        endpoints=EndpointSettings(retriever=f"127.0.0.1:{port}", reranker="127.0.0.1:1", feedback="127.0.0.1:1",
                                   metrics_port_offset=0, grace_seconds=0.5),
        training=tiny_training(data_dir, candidates_file="", eval_depth=10, mining={
            "hard_negative_depth": 5, "random_negative_share": 0.0, "hard_negative_max_ratio": 1.0}),
    )
    core = RetrieverCore(settings, embedder=embedder)
    core.ingest("tiny", DOCS)
    root = data_dir / "corpora" / "tiny"
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in QUERIES.items()))
    (root / "qrels").mkdir()
    for split, rows in QRELS.items():
        (root / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n"
                                                    + "".join(f"{q}\t{d}\t1\n" for q, d in rows.items()))

    def trainer_side():
        candidates = open_candidates(settings)
        assert isinstance(candidates, RetrieverCandidates)
        try:
            fused = candidates.candidates("tiny", "pets that purr", 5)
            assert fused[0].doc_id == "cat-1" and all(c.legs for c in fused)
            events = EventStore.open(settings)
            result = Miner(settings, candidates, events).mine("tiny", ["qrels"])
            events.close()
            triplets = load_triplets(result.files)
            assert {t.positive_doc_id for t in triplets} == {"cat-1", "vol-1"}
            for t in triplets:  # the hard negatives are the retrieved documents after the positive
                retrieved = [c.doc_id for c in candidates.candidates("tiny", t.query, 5) if c.doc_id != t.positive_doc_id]
                assert t.negative_doc_ids == retrieved[:2]
            evaluator = Evaluator(settings, FileRegistry(settings.registry_path), candidates)
            data = CorpusData(settings, "tiny")
            lists, cache = evaluator.candidate_lists(data, eval_set(settings, data))
            data.close()
            assert set(lists) == {"e1", "e2"} and lists["e1"][0].doc_id == "bank-2" and cache.is_file()
            result = evaluator.evaluate("tiny", challenger="fused", champion="fused")
            assert result["metrics"]["fused"]["hit@1"] == 1.0 and result["p_value"] == 1.0
        finally:
            candidates.close()

    async def scenario():
        app = build_app(settings, core, port=port)
        await app.start()
        try:
            await asyncio.to_thread(trainer_side)
        finally:
            await app.stop()
            await core.aclose()

    asyncio.run(scenario())
