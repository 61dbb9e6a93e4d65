"""Long documents through the real reranker: the text past the first window is scored (MaxP), and
max_tokens_per_doc cuts a document before it is split, as Cohere defines it."""

from __future__ import annotations

import grpc
import pytest

from services.common.config import EngineSettings
from services.proto.feedrank.v1 import reranker_pb2, reranker_pb2_grpc
from services.registry.importer import import_bi_encoder
from services.registry.store import FileRegistry
from tests.reranker.conftest import RerankerProcess, base_model_dir

QUERY = "What causes the northern lights (aurora borealis)?"
# About 130 tokens of baking before the answer: with a 64-token document tower the answer is in a later window.
FILLER = "The recipe calls for two cups of flour, a pinch of salt and butter folded into the dough before baking. " * 6
LONG = FILLER + "The aurora borealis is caused by charged particles from the solar wind colliding with gases in the upper atmosphere."
DISTRACTOR = "Winters in northern Norway are long, dark and cold, with heavy snow and little daylight."


@pytest.fixture(scope="module")
def short_window_registry(tmp_path_factory) -> FileRegistry:
    """The packaged MiniLM as a bi-encoder version whose document tower takes 64 tokens."""
    registry = FileRegistry(tmp_path_factory.mktemp("passages") / "registry")
    base = base_model_dir()
    import_bi_encoder(registry, base, base, EngineSettings(), query_max_length=64, doc_max_length=64, alias="champion")
    return registry


@pytest.fixture
def serve(short_window_registry, data_dir):
    servers: list[RerankerProcess] = []
    channels: list[grpc.Channel] = []

    def start(**env: str) -> reranker_pb2_grpc.RerankerStub:
        servers.append(RerankerProcess(short_window_registry.root, data_dir, **env).start())
        channels.append(grpc.insecure_channel(servers[-1].target))
        return reranker_pb2_grpc.RerankerStub(channels[-1])

    yield start
    for channel in channels:
        channel.close()
    for server in servers:
        server.stop()


def _rerank(stub, **kw) -> dict[str, float]:
    documents = [reranker_pb2.RerankDocument(id="long", text=LONG),
                 reranker_pb2.RerankDocument(id="distractor", text=DISTRACTOR)]
    response = stub.Rerank(reranker_pb2.RerankRequest(query=QUERY, documents=documents, truncate=True, **kw), timeout=60)
    return {r.id: r.score for r in response.results}


def test_relevant_text_past_the_first_window_is_scored(serve):
    """MaxP: the document scores as its best passage, the last one here."""
    stub = serve(FEEDRANK_RERANKING__PASSAGE_AGGREGATE="max")
    passages = _rerank(stub)
    assert max(passages, key=passages.get) == "long"
    # The same document cut to its head first (max_tokens_per_doc) is one window of baking only.
    head = _rerank(stub, max_tokens_per_doc=60)
    assert head["long"] < passages["long"] and max(head, key=head.get) == "distractor"
    assert head["distractor"] == pytest.approx(passages["distractor"], abs=1e-5)


def test_more_passages_than_the_queue_holds_is_invalid_not_retryable(serve):
    stub = serve(FEEDRANK_ENGINE__MAX_QUEUE_PAIRS="2")
    with pytest.raises(grpc.RpcError) as err:
        _rerank(stub)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("documents:") and "max_queue_pairs" in err.value.details()
