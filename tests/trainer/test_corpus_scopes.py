"""One champion per corpus: two corpora in one registry, each served by its own champion.

Promoting, rolling back or hot-swapping one corpus's champion must leave the other corpus's served
ranking exactly as it was (the rankings are compared before and after, through the real retriever,
reranker and trainer processes), and the gate for a corpus compares against that corpus's champion only.
"""

from __future__ import annotations

import time

import grpc
import pytest

from services.common.config import EngineSettings
from services.proto.feedrank.v1 import (
    reranker_pb2,
    reranker_pb2_grpc,
    retriever_pb2,
    retriever_pb2_grpc,
    trainer_pb2,
    trainer_pb2_grpc,
)
from services.registry.importer import import_model
from services.registry.store import FileRegistry
from services.trainer.core import TrainerCore
from tests.faults.conftest import ingest, queries, write_tiny_beir
from tests.trainer.conftest import build_corpus, make_settings

A, B = "alpha", "beta"
TOKEN = "s3cret"
AUTH = [("authorization", f"Bearer {TOKEN}")]


def _import(registry: FileRegistry, model, corpus_id: str, alias: str | None = None) -> str:
    return import_model(registry, model, EngineSettings(), alias=alias, corpus_id=corpus_id,
                        manifest_fields={"corpus_id": corpus_id}).version_id


@pytest.fixture(scope="module")
def two_corpora(tmp_path_factory, hf_models):  # noqa: F811
    """Corpora alpha and beta ingested for real; alpha's champion a1 (a2 waits), beta's champion b1."""
    from services.devstack.stack import LocalStack

    root = tmp_path_factory.mktemp("two-corpora")
    data = root / "data"
    dataset = write_tiny_beir(root / "dataset")
    for corpus_id in (A, B):
        ingest(data, dataset, corpus_id)
    registry = FileRegistry(data / "registry")
    versions = {"a1": _import(registry, hf_models[0], A, "champion"), "a2": _import(registry, hf_models[1], A),
                "b1": _import(registry, hf_models[1], B, "champion")}
    stack = LocalStack(data, env={"FEEDRANK_LOG_LEVEL": "WARNING", "HF_HUB_OFFLINE": "1",
                                  "FEEDRANK_ENGINE__WATCH_INTERVAL_S": "0.2",
                                  "FEEDRANK_RETRIEVAL__ADAPTER_REFRESH_S": "0.2",
                                  "FEEDRANK_RERANKING__RERANKER_TIMEOUT": "30",
                                  "FEEDRANK_ENDPOINTS__ADMIN_TOKEN": TOKEN},
                       services=("reranker", "trainer", "retriever")).start()
    try:
        yield stack, registry, versions
    finally:
        stack.stop()


def _served(stack, corpus_id: str) -> list[tuple[str, list[str]]]:
    """(model version, ranked doc ids) of every query, as a client sees them."""
    with grpc.insecure_channel(stack.target("retriever")) as channel:
        stub = retriever_pb2_grpc.RetrieverStub(channel)
        out = []
        for query in queries():
            response = stub.Search(retriever_pb2.SearchRequest(corpus_id=corpus_id, query=query, top_k=10), timeout=60)
            assert not response.degraded_reason, response.degraded_reason
            out.append((response.model_version, [r.doc_id for r in response.results]))
        return out


def _wait_served(stack, corpus_id: str, version: str, timeout_s: float = 120) -> None:
    with grpc.insecure_channel(stack.target("reranker")) as channel:
        stub = reranker_pb2_grpc.RerankerStub(channel)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            info = stub.GetInfo(reranker_pb2.GetRerankerInfoRequest(), timeout=10)
            served = info.corpus_aliases[corpus_id].aliases if corpus_id in info.corpus_aliases else {}
            if served.get("champion", "fused") == version:
                return
            time.sleep(0.2)
    raise AssertionError(f"the reranker did not swap {corpus_id}'s champion to {version}: {info}")


def test_promote_rollback_and_hot_swap_of_one_corpus_leave_the_other_served_as_it_was(two_corpora):
    stack, registry, v = two_corpora
    _wait_served(stack, A, v["a1"])
    _wait_served(stack, B, v["b1"])
    beta_before = _served(stack, B)
    alpha_before = _served(stack, A)
    assert {version for version, _ in beta_before} == {v["b1"]}
    assert {version for version, _ in alpha_before} == {v["a1"]}

    with grpc.insecure_channel(stack.target("trainer")) as channel:
        trainer = trainer_pb2_grpc.TrainerStub(channel)
        # Promote alpha's waiting version (gate skipped: this is about scope, not about the gate).
        decision = trainer.Promote(trainer_pb2.PromoteRequest(corpus_id=A, version_id=v["a2"], force=True),
                                   timeout=120, metadata=AUTH)
        assert decision.promoted and decision.champion == v["a2"], decision.reason
        _wait_served(stack, A, v["a2"])
        alpha_promoted = _served(stack, A)
        assert {version for version, _ in alpha_promoted} == {v["a2"]}
        assert [r for _, r in alpha_promoted] != [r for _, r in alpha_before]  # alpha's ranking did change
        assert _served(stack, B) == beta_before

        # Beta's version can never serve alpha, even when named for it.
        with pytest.raises(grpc.RpcError) as err:
            trainer.Promote(trainer_pb2.PromoteRequest(corpus_id=A, version_id=v["b1"], force=True),
                            timeout=60, metadata=AUTH)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "version_id" in err.value.details()

        rolled = trainer.Rollback(trainer_pb2.RollbackRequest(corpus_id=A), timeout=60, metadata=AUTH)
        assert rolled.promoted and rolled.champion == v["a1"], rolled.reason
        _wait_served(stack, A, v["a1"])
        assert _served(stack, A) == alpha_before
        assert _served(stack, B) == beta_before

        # A second rollback leaves alpha on the fused order; beta still serves b1.
        trainer.Rollback(trainer_pb2.RollbackRequest(corpus_id=A), timeout=60, metadata=AUTH)
        _wait_served(stack, A, "fused")
        assert {version for version, _ in _served(stack, A)} == {"none"}
        assert _served(stack, B) == beta_before

    # A hot swap straight in the registry (as `feedrank model import --alias champion --corpus-id` does).
    registry.set_alias("champion", v["a2"], "operator swap", corpus_id=A)
    _wait_served(stack, A, v["a2"])
    assert _served(stack, A) == alpha_promoted
    assert _served(stack, B) == beta_before
    assert registry.aliases(B) == {"champion": v["b1"]}
    assert registry.aliases(A) == {"champion": v["a2"]}


def test_the_gate_of_a_corpus_compares_against_its_own_champion_only(data_dir, hf_models):  # noqa: F811
    build_corpus(data_dir, A, bad_fused=True)
    build_corpus(data_dir, B, bad_fused=True)
    registry = FileRegistry(data_dir / "registry")
    alpha_champion = _import(registry, hf_models[0], A, "champion")
    beta_challenger = _import(registry, hf_models[1], B, "challenger")
    core = TrainerCore(make_settings(data_dir, gate={"min_gain": -1.0, "max_p": 1.0, "min_triplets": 0}), registry=registry)
    try:
        decision = core.promote(B)
        assert decision["champion_before"] == "fused" and decision["version_id"] == beta_challenger
        numbers = decision["numbers"]
        assert numbers["champion_ndcg@10"] == numbers["fused_ndcg@10"]  # compared with the fused order, not alpha's
        assert decision["promoted"], decision["reason"]
        assert core.evaluator.evaluate(B, save=False)["champion"]["version_id"] == beta_challenger
        # alpha's gate, in turn, sees alpha's champion and never beta's.
        assert core.evaluator.evaluate(A, save=False)["champion"]["version_id"] == alpha_champion
        assert registry.aliases(A) == {"champion": alpha_champion}
        assert registry.aliases(B) == {"champion": beta_challenger, "challenger": beta_challenger}
        assert [h["judge"] for h in registry.history(B) if h["alias"] == "champion"] == ["labels"]

        # Rolled back, beta has no champion of its own: a corpus-neutral global one serves it, never alpha's.
        fields = registry.manifest(alpha_champion).to_json()
        fields = {k: v for k, v in fields.items() if k not in ("version_id", "corpus_id", "files", "created_at")}
        neutral = registry.publish(registry.local_path(alpha_champion), fields).version_id
        registry.set_alias("champion", neutral, "imported for every corpus")
        rolled = core.rollback(B)
        assert rolled["champion"] == neutral and rolled["version_id"] == "fused", rolled
        assert registry.resolve("champion", B) == neutral and registry.resolve("champion", A) == alpha_champion
    finally:
        core.close()
