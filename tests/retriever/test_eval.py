"""`feedrank eval`'s runner on a tiny BEIR dataset, with a stand-in reranker for the rerank row."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from services.common.config import EndpointSettings, Settings
from services.common.errors import FeedrankError
from services.retriever.core import RetrieverCore
from services.retriever.evaluation import FUSIONS, evaluate_corpus, write_report
from services.proto.feedrank.v1 import reranker_pb2_grpc
from tests.retriever.conftest import DOCS, ReversingReranker, start_stub_server

QUERIES = {"q1": "volcanic lava eruption", "q2": "pet cats purring", "q3": "loan for a house", "q4": "sorted array search"}
QRELS = {"q1": {"vol-1": 1, "vol-3": 1}, "q2": {"cat-1": 1}, "q3": {"bank-2": 2}, "q4": {"code-3": 1}}


@pytest.fixture
def beir_dir(tmp_path):
    folder = tmp_path / "tiny-beir"
    (folder / "qrels").mkdir(parents=True)
    with open(folder / "corpus.jsonl", "w") as fh:
        for d in DOCS:
            fh.write(json.dumps({"_id": d.id, "title": d.title, "text": d.text}) + "\n")
    with open(folder / "queries.jsonl", "w") as fh:
        for qid, text in QUERIES.items():
            fh.write(json.dumps({"_id": qid, "text": text}) + "\n")
    with open(folder / "qrels" / "test.tsv", "w") as fh:
        fh.write("query-id\tcorpus-id\tscore\n")
        for qid, rel in QRELS.items():
            for doc, grade in rel.items():
                fh.write(f"{qid}\t{doc}\t{grade}\n")
    return folder


def _core(data_dir, embedder, reranker_target="127.0.0.1:1"):
    base = Settings(data_dir=str(data_dir))
    settings = base.replace(
        endpoints=EndpointSettings(reranker=reranker_target, feedback="127.0.0.1:1", metrics_port_offset=0),
        reranking=base.reranking.model_copy(update={"tribrid_reranker_topn": 3}),
    )
    return RetrieverCore(settings, embedder=embedder)


def test_eval_rows_without_a_reranker(seeded_data_dir, embedder, beir_dir):
    core = _core(seeded_data_dir, embedder)
    core.ingest_beir("tiny", beir_dir)
    assert (core.corpora.get("tiny").root / "qrels" / "test.tsv").is_file()
    result = evaluate_corpus(core, "tiny", "test")
    core.close()
    assert set(result.rows) == {"bm25", "dense", *FUSIONS}
    assert result.queries == 4
    for row in result.rows.values():
        assert row["recall@100"] == 1.0  # every document is within depth on a 12-document corpus
        assert row["hit@10"] == 1.0
    assert result.rows["rrf"]["ndcg@10"] > 0.8
    assert any("skipped" in n and "UNAVAILABLE" in n for n in result.notes)
    path = write_report(result, seeded_data_dir / "evals")
    report = json.loads(path.read_text())
    assert report["metrics"]["bm25"]["ndcg@10"] == result.rows["bm25"]["ndcg@10"]
    with pytest.raises(FeedrankError) as err:
        evaluate_corpus(_core(seeded_data_dir, embedder), "tiny", "dev")
    assert err.value.field == "split"


def test_eval_adds_the_reranked_row_when_a_reranker_answers(seeded_data_dir, embedder, beir_dir):
    stand_in = ReversingReranker()

    async def start():
        return await start_stub_server(lambda s: reranker_pb2_grpc.add_RerankerServicer_to_server(stand_in, s))

    loop = asyncio.new_event_loop()
    server, target = loop.run_until_complete(start())
    # The runner drives its own event loop; the stand-in serves from this one in a thread.
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        core = _core(seeded_data_dir, embedder, target)
        core.ingest_beir("tiny", beir_dir)
        result = evaluate_corpus(core, "tiny", "test")
        core.close()
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.run_until_complete(server.stop(0))
        loop.close()
    assert "rrf+rerank" in result.rows
    assert len(stand_in.requests) == 4 and all(len(r.documents) == 3 for r in stand_in.requests)
    # Reversing the top 3 moves the fused best document down, so the first hit gets worse.
    assert result.rows["rrf+rerank"]["hit@1"] < result.rows["rrf"]["hit@1"]
    assert result.rows["rrf+rerank"]["recall@100"] == result.rows["rrf"]["recall@100"]


def test_eval_of_a_corpus_without_queries(seeded_data_dir, embedder):
    core = _core(seeded_data_dir, embedder)
    core.ingest("plain", DOCS[:2])
    with pytest.raises(FeedrankError) as err:
        evaluate_corpus(core, "plain", "test")
    core.close()
    assert err.value.field == "corpus_id"
