"""A tiny real corpus on disk (as the retriever lays it out), fixed candidate lists, and a trainer process.

The retriever is not started here: candidates come from `training.candidates_file` (a
FileCandidates source behind the same interface as the live Retriever.Search), ranked by word
overlap, so the tests need no embedder or index.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.common.config import EndpointSettings, LoopSettings, Settings, TrainingSettings
from services.common.documents import Doc
from services.retriever.corpus import DocStore
from tests.conftest import ServiceProcess

REPO = Path(__file__).resolve().parents[2]

TOPICS = {
    "volcano": ["magma rises through the crust and erupts as lava", "ash clouds from an eruption ground flights",
                "dormant volcanoes can wake after centuries"],
    "bees": ["honey bees dance to show where flowers are", "a queen bee lays thousands of eggs",
             "bees pollinate crops such as almonds"],
    "tides": ["the moon's gravity pulls the oceans into tides", "spring tides happen at full and new moon",
              "tidal ranges are largest in narrow bays"],
    "bread": ["yeast ferments sugar and makes dough rise", "sourdough uses wild yeast and bacteria",
              "kneading builds gluten in bread dough"],
    "comets": ["a comet's tail points away from the sun", "comets are made of ice and dust",
               "halley's comet returns every 76 years"],
    "chess": ["castling moves the king and a rook together", "a pawn promotes on the last rank",
              "the sicilian defence answers e4 with c5"],
    "rust": ["iron rusts when oxygen and water meet", "stainless steel resists rust with chromium",
             "galvanising coats steel with zinc against rust"],
    "owls": ["owls hunt at night with silent feathers", "an owl can turn its head very far",
             "barn owls find mice by sound alone"],
}
TRAIN_Q = {f"tr-{t}": f"tell me about {t} facts" for t in TOPICS}
TEST_Q = {f"te-{t}": f"what do we know on {t}" for t in TOPICS}


def doc_id(topic: str, i: int) -> str:
    return f"{topic}-{i}"


def overlap_candidates(docs: dict[str, str], queries: list[str]) -> dict[str, list[dict]]:
    """Rank every document by shared words (ties by id): a deterministic stand-in for fusion."""
    out = {}
    for q in queries:
        words = set(q.lower().split())
        scored = sorted(docs, key=lambda d: (-len(words & set(docs[d].lower().split())), d))
        out[q] = [{"doc_id": d, "score": 1.0 / (60 + r), "lexical_rank": r, "vector_rank": r}
                  for r, d in enumerate(scored, 1)]
    return out


def build_corpus(data_dir: Path, corpus_id: str = "tiny", extra_queries: list[str] = (), *,
                 bad_fused: bool = False) -> Path:
    """bad_fused: the eval queries' relevant document comes 12th in the fused order (the last of
    the rerank window, just outside the top 10), so a reranker that is not adversarial beats the fused order."""
    root = data_dir / "corpora" / corpus_id
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    docs = {doc_id(t, i): f"{t}\n{text}" for t, texts in TOPICS.items() for i, text in enumerate(texts)}
    store = DocStore(root / "docs.sqlite")
    store.upsert([Doc(d, d.split("-")[0], text.split("\n", 1)[1]) for d, text in docs.items()])
    store.close()
    with (root / "queries.jsonl").open("w") as fh:
        for qid, text in {**TRAIN_Q, **TEST_Q}.items():
            fh.write(json.dumps({"_id": qid, "text": text}) + "\n")
    for split, queries in (("train", TRAIN_Q), ("test", TEST_Q)):
        with (root / "qrels" / f"{split}.tsv").open("w") as fh:
            fh.write("query-id\tcorpus-id\tscore\n")
            for qid in queries:
                topic = qid.split("-", 1)[1]
                fh.write(f"{qid}\t{doc_id(topic, 0)}\t1\n")
    cand_file = data_dir / "candidates.json"
    lists = json.loads(cand_file.read_text()) if cand_file.is_file() else {}
    lists[corpus_id] = overlap_candidates(docs, [*TRAIN_Q.values(), *TEST_Q.values(), *extra_queries])
    if bad_fused:
        for qid, text in TEST_Q.items():
            relevant = doc_id(qid.split("-", 1)[1], 0)
            rows = [r for r in lists[corpus_id][text] if r["doc_id"] != relevant]
            rows.insert(11, next(r for r in lists[corpus_id][text] if r["doc_id"] == relevant))
            lists[corpus_id][text] = [{**r, "score": 1.0 / (60 + i), "lexical_rank": i, "vector_rank": i}
                                      for i, r in enumerate(rows, 1)]
    cand_file.write_text(json.dumps(lists))
    return root


def tiny_training(data_dir: Path, **changes) -> TrainingSettings:
    """Small, fast training settings; a group's changes (gate={"max_p": 0.5}) are merged into its tiny values."""
    values: dict = dict(
        recipe="cross-encoder", max_length=64, batch_size=8, epochs=1, negatives_per_positive=2, candidates_file=str(data_dir / "candidates.json"),
        consume_events=False, gate={"test_samples": 500, "min_triplets": 4}, mining={"hard_negative_depth": 10},
        dev_share=0.0, eval_rerank_depth=12,
    )
    for key, value in changes.items():
        values[key] = {**values[key], **value} if isinstance(value, dict) and isinstance(values.get(key), dict) else value
    return TrainingSettings(**values)


def make_settings(data_dir: Path, loop: LoopSettings | None = None, **training) -> Settings:
    return Settings(
        data_dir=str(data_dir), log_json=False,
        endpoints=EndpointSettings(metrics_port_offset=0),
        training=tiny_training(data_dir, **training), loop=loop or LoopSettings(),
    )


class TrainerProcess(ServiceProcess):
    """`python -m services.trainer` as a child process, configured through the environment."""

    def __init__(self, data_dir: Path, env: dict[str, str]):
        self.data_dir = data_dir
        super().__init__("trainer", data_dir, {"FEEDRANK_LOG_LEVEL": "INFO", "FEEDRANK_LOG_JSON": "false", **env})


def training_env(data_dir: Path, **training: str) -> dict[str, str]:
    """The tiny training settings as FEEDRANK_TRAINING__* variables; a group's setting is `group__name`."""
    tiny = tiny_training(data_dir).model_dump(mode="json")
    values = {k: v for k, v in tiny.items()
              if k in ("recipe", "max_length", "batch_size", "negatives_per_positive", "candidates_file", "consume_events",
                       "dev_share", "eval_rerank_depth")}
    values.update({f"{group}__{k}": v for group in ("gate", "mining") for k, v in tiny[group].items()
                   if k in ("test_samples", "min_triplets", "hard_negative_depth")})
    values.update(training)
    return {f"FEEDRANK_TRAINING__{k.upper()}": str(v).lower() if isinstance(v, bool) else str(v)
            for k, v in values.items()}


@pytest.fixture
def corpus(data_dir) -> Path:
    return build_corpus(data_dir)


@pytest.fixture
def trainer_process(data_dir):
    procs: list[TrainerProcess] = []

    def start(**env: str) -> TrainerProcess:
        proc = TrainerProcess(data_dir, env).start()
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.stop()
