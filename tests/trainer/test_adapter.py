"""The query-adapter recipe end to end on a small corpus (issue 6's acceptance test).

40 documents in 8 topics; users asking about a topic click the documents of a *partner* topic, which
the base model does not place near the query and the fused order puts at ranks 12-16 (inside the
reranker's window of 20, outside the top 10). Mine (qrels of `train`, minus the `train@0.25` holdout)
-> Train (the adapter, real torch, real embedder) -> Evaluate (the registry version through its adapted
vector leg, the reranker's scorer and its head) -> Promote, on the held-out queries. Then the evaluator's
order is compared with the reranker core's for the same requests.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from services.common.config import EndpointSettings, EngineSettings, Settings
from services.common.documents import Doc
from services.engine.manifest import Blend, LinearHead
from services.retriever.corpus import DocStore
from services.retriever.fusion import served_fusion
from services.retriever.ingest import embed_text
from services.trainer.core import TrainerCore
from services.trainer.corpus_data import CorpusData, eval_holdout, eval_set, normalize_query
from services.trainer.fusion_learner import refused
from services.trainer.mining import load_triplets
from tests.trainer.conftest import tiny_training

TOPICS = {
    "volcano": ["magma rises through the crust and erupts as lava", "ash clouds from an eruption ground flights",
                "dormant volcanoes can wake after centuries", "pyroclastic flows race down the slopes",
                "calderas form when a magma chamber empties"],
    "bees": ["honey bees dance to show where flowers are", "a queen bee lays thousands of eggs",
             "bees pollinate crops such as almonds", "worker bees build wax combs",
             "a hive keeps warm in winter by shivering"],
    "tides": ["the moon's gravity pulls the oceans into tides", "spring tides happen at full and new moon",
              "tidal ranges are largest in narrow bays", "neap tides have the smallest range",
              "tide tables predict high water"],
    "bread": ["yeast ferments sugar and makes dough rise", "sourdough uses wild yeast and bacteria",
              "kneading builds gluten in bread dough", "a hot oven gives bread its crust", "rye bread is dense and dark"],
    "comets": ["a comet's tail points away from the sun", "comets are made of ice and dust",
               "halley's comet returns every 76 years", "the oort cloud is a reservoir of comets",
               "a comet's nucleus is a few kilometres wide"],
    "chess": ["castling moves the king and a rook together", "a pawn promotes on the last rank",
              "the sicilian defence answers e4 with c5", "a knight moves in an L shape", "checkmate ends the game"],
    "rust": ["iron rusts when oxygen and water meet", "stainless steel resists rust with chromium",
             "galvanising coats steel with zinc against rust", "salt water speeds up rusting",
             "rust flakes off and exposes new metal"],
    "owls": ["owls hunt at night with silent feathers", "an owl can turn its head very far",
             "barn owls find mice by sound alone", "owls swallow prey whole and cough up pellets",
             "snowy owls live in the arctic"],
}
NAMES = list(TOPICS)
PARTNER = {t: NAMES[(i + 3) % len(NAMES)] for i, t in enumerate(NAMES)}
PHRASINGS = ["tell me about {t}", "{t} facts", "what is there to know on {t}", "explain {t} to me", "{t} overview",
             "i want to learn about {t}"]
QUERIES = {f"q-{t}-{i}": p.format(t=t) for t in NAMES for i, p in enumerate(PHRASINGS)}


def topic_of(qid: str) -> str:
    return qid.split("-")[1]


def fused_list(topic: str) -> list[dict]:
    """The topic's own documents first, six others, then the partner's (ranks 12-16), then the rest."""
    own = [f"{topic}-{i}" for i in range(5)]
    partner = [f"{PARTNER[topic]}-{i}" for i in range(5)]
    others = [f"{t}-{i}" for t in NAMES if t not in (topic, PARTNER[topic]) for i in range(5)]
    order = own + others[:6] + partner + others[6:]
    return [{"doc_id": d, "score": 1.0 / (60 + r), "lexical_rank": r, "vector_rank": r, "lexical_score": 20.0 - r / 4,
             "vector_score": 0.9 - r / 100} for r, d in enumerate(order, 1)]


def build_partner_corpus(data_dir: Path, export: Path, *, store_vectors: bool = True) -> None:
    shutil.copytree(export, data_dir / "models" / "embedder", dirs_exist_ok=True)
    root = data_dir / "corpora" / "partners"
    (root / "qrels").mkdir(parents=True)
    docs = [Doc(f"{t}-{i}", t, text) for t, texts in TOPICS.items() for i, text in enumerate(texts)]
    store = DocStore(root / "docs.sqlite")
    vectors = None
    if store_vectors:  # as the retriever's ingest stores them
        from services.retriever.embedder import Embedder

        vectors = Embedder(data_dir / "models" / "embedder", EngineSettings(), 256, 64).encode(
            [embed_text(d) for d in docs])
    store.upsert(docs, vectors)
    store.close()
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in QUERIES.items()))
    (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{PARTNER[topic_of(q)]}-{i}\t1\n" for q in QUERIES for i in range(5)))
    (data_dir / "candidates.json").write_text(json.dumps(
        {"partners": {text: fused_list(topic_of(q)) for q, text in QUERIES.items()}}))


def adapter_settings(data_dir: Path, **changes) -> Settings:
    values = {"recipe": "query-adapter", "eval_split": "train@0.25", "eval_rerank_depth": 20, "dev_share": 0.2,
              "adapter": {"epochs": 30, "lr": 1e-2, "eval_every": 10}, "gate": {"max_p": 0.05}}
    values.update(changes)
    return Settings(data_dir=str(data_dir), log_json=False, endpoints=EndpointSettings(metrics_port_offset=0),
                    training=tiny_training(data_dir, **values))


def test_adapter_learns_and_beats_the_fused_order_on_the_holdout(tmp_path, embedder_dir):
    build_partner_corpus(tmp_path, embedder_dir)
    settings = adapter_settings(tmp_path)
    core = TrainerCore(settings)
    try:
        data = CorpusData(settings, "partners")
        holdout = eval_holdout(settings, data)
        holdout_texts = {normalize_query(QUERIES[q]) for q in holdout}
        assert len(holdout) == 12 and holdout == eval_holdout(adapter_settings(tmp_path), data)  # deterministic
        assert eval_holdout(adapter_settings(tmp_path, seed=14), data) != holdout
        assert set(eval_set(settings, data).queries) == holdout
        data.close()

        mined = core.mine("partners", ["qrels"])
        assert mined.counts == {"qrels": 36 * 5} and mined.skipped == {"qrels.eval_query": 12}
        assert not {normalize_query(t.query) for t in load_triplets(mined.files)} & holdout_texts  # never mined
        half = core.mine("partners", ["qrels"], qrels_split="train@0.5")  # labels of a seeded half only
        assert half.counts == {"qrels": 18 * 5}
        assert half.skipped == {"qrels.eval_query": 12, "qrels.outside_share": 18}
        labelled = {t.query for t in load_triplets(half.files)}
        assert labelled < {t.query for t in load_triplets(mined.files)}
        assert labelled == {t.query for t in load_triplets(core.mine("partners", ["qrels"], qrels_split="train@0.5").files)}

        run_id = core.train("partners", "base", mined.files)
        record = core.wait(run_id, timeout_s=300)
        assert record.status == "succeeded", record.error
        assert record.data["queries"] == 36 and 2 <= record.data["dev_queries"] <= 14
        assert record.metrics["dev_cosine_ndcg@10"] > 0.9  # the partner documents are learnt
        assert record.metrics["dev_head_ndcg@10"] > record.metrics["dev_fused_ndcg@10"]
        assert {"dev_cv_blend_ndcg@10", "dev_cv_linear_ndcg@10"} <= set(record.metrics)
        streamed = [json.loads(line) for line in core.runs.metrics_path(run_id).read_text().splitlines()]
        names = [m["name"] for m in streamed if m["name"] != "status"]
        assert names[0] == "max_steps" and names.count("loss") == 30 and names.count("eval_ndcg@10") == 4
        losses = [m["value"] for m in streamed if m["name"] == "loss"]
        assert losses[-1] < losses[0]
        manifest = core.registry.manifest(record.version_id)
        assert manifest.kind == "bi-encoder" and manifest.doc_tower_is_dense_leg
        assert manifest.vector_leg_adapter and manifest.corpus_id == "partners"
        # The run chose its corpus's fusion on the same dev feedback: never worse there than the configured one.
        assert set(manifest.fusion["weights"]) == {"lexical", "vector"}
        assert record.metrics["dev_fusion_ndcg@10"] >= record.metrics["dev_configured_fusion_ndcg@10"]
        assert manifest.head is not None  # exactly one head (a manifest cannot hold two), the one CV chose
        if manifest.blend is not None:
            assert manifest.blend == Blend(weight=record.metrics["blend_weight"],
                                           depth=int(record.metrics["blend_depth"]))
        else:
            assert len(manifest.linear_head.coef) == 7
        assert core.registry.aliases("partners")["challenger"] == record.version_id

        decision = core.promote("partners", record.version_id)
        assert decision["promoted"], decision["reason"]
        numbers = decision["numbers"]
        assert numbers["queries"] == 12 and numbers["fused_ndcg@10"] < 0.2 and numbers["challenger_ndcg@10"] > 0.8

        # A second run warm-starts W from the champion's adapter.
        again = core.wait(core.train("partners", "champion", mined.files, overrides={"adapter.epochs": "10"}), 300)
        assert again.status == "succeeded", again.error
        assert again.base_model == f"{record.version_id} (adapter)"
        assert again.metrics["dev_cosine_ndcg@10"] > 0.9
    finally:
        core.close()


LINEAR_HEAD = LinearHead(depth=10, coef=[0.3, -0.2, 0.5, 1.5, 0.8, 0.4, 0.2], intercept=-0.1,
                         mean=[10.0, 0.5, 0.01, 0.4, 0.5, 0.01, 0.02],
                         scale=[5.0, 0.3, 0.005, 0.3, 0.3, 0.005, 0.01])


LEARNED_FUSION = {"method": "weighted", "rrf_k": 60.0, "normalization": "minmax",
                  "weights": {"lexical": 0.2, "vector": 0.8}}


@pytest.mark.parametrize("head", [
    {"blend": Blend(weight=0.6, depth=12)},
    {"linear_head": LINEAR_HEAD, "vector_leg_adapter": True},
    {"blend": Blend(weight=0.6, depth=12), "fusion": LEARNED_FUSION},
    {"linear_head": LINEAR_HEAD, "vector_leg_adapter": True, "fusion": LEARNED_FUSION},
], ids=["blend", "linear-head-adapted-leg", "blend-learned-fusion", "linear-head-adapted-leg-learned-fusion"])
def test_evaluator_ranks_as_the_reranker_serves(tmp_path, embedder_dir, head):
    """Same requests, same order: the evaluator vs RerankerCore, for a bi-encoder + adapter version with
    either head; with `vector_leg_adapter` the evaluator's lists are the adapted vector leg's, and the
    requests carry those lists' legs. The corpus has no stored vectors: the trainer embeds them once."""
    from services.registry.importer import import_bi_encoder
    from services.reranker.batching import Batcher
    from services.reranker.cache import ResultCache
    from services.reranker.core import Document, RerankerCore, RerankQuery
    from services.reranker.versions import VersionPool
    from services.retriever.embedder import packaged_model_dir

    build_partner_corpus(tmp_path, embedder_dir, store_vectors=False)
    settings = adapter_settings(tmp_path, eval_rerank_depth=16)
    core = TrainerCore(settings)
    try:
        base = packaged_model_dir()
        adapter = (np.random.default_rng(0).standard_normal((384, 384)) * 0.05).astype(np.float32)
        manifest = import_bi_encoder(core.registry, base, base, settings.engine, query_max_length=64,
                                     doc_max_length=settings.retrieval.embedder_max_length, adapter=adapter,
                                     alias="champion", corpus_id="partners",
                                     manifest_fields={"corpus_id": "partners", "doc_tower_is_dense_leg": True, **head})
        data = CorpusData(settings, "partners")
        es = eval_set(settings, data)
        lists, _ = core.evaluator.candidate_lists(data, es)
        ours = core.evaluator.model_run(manifest.version_id, data, es, lists)
        # What the retriever serves for the version's corpus: its learned fusion, else the configured one.
        fusion = served_fusion(head.get("fusion"), settings.fusion)
        if "vector_leg_adapter" in head:
            adapted = core.evaluator._through_adapter(core.registry.local_path(manifest.version_id), data, es, lists,
                                                      fusion)
            assert adapted != lists  # the adapter moved the vector leg
            lists = adapted
        elif "fusion" in head:
            fused_again = {qid: refused(rows, fusion) for qid, rows in lists.items()}
            assert fused_again != lists  # the learned fusion reorders the candidates
            lists = fused_again
        vectors = core.evaluator._leg_vectors(data)
        assert list((tmp_path / "trainer" / "doc_vectors").glob("partners-*.npy"))  # cached for the next reader
        requests = {}
        for qid, rows in lists.items():
            top = rows[:16]
            texts = data.texts([c.doc_id for c in top])
            requests[qid] = RerankQuery(es.queries[qid], [
                Document(c.doc_id, texts[c.doc_id], vector=tuple(vectors[c.doc_id].tolist()), fused=c)
                for c in top], corpus_id="partners")
        data.close()

        async def serve():
            pool = VersionPool(core.registry, settings.engine)
            await pool.refresh()
            batcher = Batcher(settings.engine)
            batcher.start()
            reranker = RerankerCore(settings, pool, batcher, ResultCache(0))
            try:
                return {qid: await reranker.rerank(r) for qid, r in requests.items()}
            finally:
                await batcher.close()

        served = asyncio.run(serve())
        for qid, outcome in served.items():
            assert outcome.model_version == manifest.version_id
            evaluated = sorted(ours[qid], key=lambda d: -ours[qid][d])[:16]
            assert [r.id for r in outcome.results] == evaluated, qid
    finally:
        core.close()


def test_bootstrap_trains_the_adapter_from_the_train_qrels(tmp_path, embedder_dir):
    build_partner_corpus(tmp_path, embedder_dir)
    core = TrainerCore(adapter_settings(tmp_path, adapter={"epochs": 20, "lr": 1e-2, "eval_every": 10}))
    try:
        result = core.bootstrap("partners")
        assert result["triplets"] == {"qrels": 36 * 5}  # the train split minus the eval holdout
        assert all("not used by the query-adapter recipe" in m for m in result["missing_sources"])
        assert len(result["missing_sources"]) == 3  # wikiqa, trecqa, staqc
        assert core.registry.manifest(result["version_id"]).kind == "bi-encoder"
        assert result["decision"]["promoted"], result["decision"]["reason"]
        # Beside v0, the fused order under the fusion learned from the same labels, judged by the same gate:
        # v0 learnt the partner documents, so the fused order alone does not replace it.
        fusion_only = core.registry.manifest(result["fusion"]["version_id"])
        assert fusion_only.blend.weight == 0.0 and not fusion_only.vector_leg_adapter
        assert fusion_only.fusion == result["fusion"]["fusion"]
        assert set(fusion_only.fusion["weights"]) == {"lexical", "vector"}
        assert not result["fusion"]["decision"]["promoted"], result["fusion"]["decision"]["reason"]
        assert core.registry.resolve("champion", "partners") == result["version_id"]
    finally:
        core.close()


def test_dev_split_follows_the_query_text_not_its_row():
    """A warm-started run must not find its champion's training queries in its dev split."""
    from services.trainer.adapter import split_queries

    texts = [f"query number {i}" for i in range(200)]
    train, dev = split_queries(texts, 0.2, seed=13)
    assert sorted(train + dev) == list(range(200)) and 20 <= len(dev) <= 60
    shuffled = texts[::-1]
    _, dev_again = split_queries(shuffled, 0.2, seed=13)
    assert {shuffled[i] for i in dev_again} == {texts[i] for i in dev}
    assert {texts[i] for i in split_queries(texts, 0.2, seed=14)[1]} != {texts[i] for i in dev}
    assert split_queries(texts[:3], 0.2, seed=13)[1] == []  # too few to hold any out


def test_list_overrides_and_split_validation():
    from services.common.config import TrainingSettings
    from services.common.errors import ErrorKind, FeedrankError
    from services.trainer.corpus_data import parse_split
    from services.trainer.training import apply_overrides

    changed = apply_overrides(TrainingSettings(), {"adapter.blend_depths": "10, 30", "adapter.blend_weights": "0,0.5",
                                                   "recipe": "cross-encoder"})
    assert changed.adapter.blend_depths == [10, 30] and changed.adapter.blend_weights == [0.0, 0.5]
    assert changed.recipe == "cross-encoder"
    assert parse_split("test", "f") == ("test", None) and parse_split("train@0.2", "f") == ("train", 0.2)
    for bad in ("train@", "train@1.5", "train@x", "@0.2"):
        with pytest.raises(FeedrankError) as err:
            parse_split(bad, "training.eval_split")
        assert err.value.kind == ErrorKind.INVALID_ARGUMENT and err.value.field == "training.eval_split"
