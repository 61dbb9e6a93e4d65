"""Where the trainer gets fused candidate lists: the live retriever, or a fixed file.

Both answer `candidates(corpus_id, query, depth)` with the fused list (best first) of `Candidate`s
(services/common/legs.py: each document's fused score and its legs' ranks and scores), the way
`Retriever.Search` with rerank mode "none" returns it. The file source is for offline work and tests:
`{"<corpus_id>": {"<query text>": [{"doc_id", "score", and per leg "<leg>_rank", "<leg>_score"
("lexical_rank", "lexical_score", "vector_rank", ...)}, ...]}}` (services/common/legs.py `from_record`).
The lists are the base query tower's (rerank mode "none" makes the retriever skip any version's query
adapter).
"""

from __future__ import annotations

import abc
import json
from pathlib import Path

import grpc

from services.common.channels import open_channel
from services.common.config import EndpointSettings, Settings
from services.common.credentials import service_token
from services.common.errors import ErrorKind, FeedrankError, invalid
from services.common.legs import Candidate, from_leg_scores, from_record
from services.proto.feedrank.v1 import retriever_pb2, retriever_pb2_grpc

# Impressions the trainer's own searches cause carry this session id, so mining and the
# scheduler's event count can tell them from users' searches.
TRAINER_SESSION = "feedrank-trainer"


class CandidateSource(abc.ABC):
    @abc.abstractmethod
    def candidates(self, corpus_id: str, query: str, depth: int) -> list[Candidate]:
        """The fused list, best first: the union of the legs' top `depth`."""

    def close(self) -> None:
        return None


class RetrieverCandidates(CandidateSource):
    """`Retriever.Search` with rerank mode "none" (the fused order, no reranker in the loop)."""

    def __init__(self, target: str, timeout_s: float, endpoints: EndpointSettings):
        self.target = target
        self.timeout_s = timeout_s
        self._channel = open_channel(target, endpoints, token=service_token(endpoints.read_token))
        self._stub = retriever_pb2_grpc.RetrieverStub(self._channel)

    def candidates(self, corpus_id: str, query: str, depth: int) -> list[Candidate]:
        request = retriever_pb2.SearchRequest(
            corpus_id=corpus_id, query=query, top_k=min(2 * depth, 1000), candidate_k=depth,
            rerank_mode="none", session_id=TRAINER_SESSION, no_intervention=True,
        )
        try:
            response = self._stub.Search(request, timeout=self.timeout_s)
        except grpc.RpcError as err:
            code = err.code()
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                raise invalid("corpus_id", f"retriever refused the search: {err.details()}") from err
            raise FeedrankError(
                ErrorKind.UNAVAILABLE, f"retriever at {self.target} failed: {code.name}: {err.details()}"
            ) from err
        return [from_leg_scores(r.doc_id, r.legs) for r in response.results]

    def close(self) -> None:
        self._channel.close()


class FileCandidates(CandidateSource):
    def __init__(self, path: Path):
        try:
            self.lists = json.loads(Path(path).read_text())
        except (OSError, ValueError) as err:
            raise invalid("training.candidates_file", f"cannot read {path}: {err}") from err

    def candidates(self, corpus_id: str, query: str, depth: int) -> list[Candidate]:
        rows = self.lists.get(corpus_id, {}).get(query)
        if rows is None:
            raise FeedrankError(ErrorKind.NOT_FOUND, f"no candidates for {query!r} in corpus {corpus_id}")
        out = [from_record(row) for row in rows]
        # As the retriever would answer: documents within some leg's top `depth` (or with no legs recorded).
        return [c for c in out if not c.legs or any(hit.rank <= depth for hit in c.legs.values())][: 2 * depth]


def open_candidates(settings: Settings) -> CandidateSource:
    if settings.training.candidates_file:
        return FileCandidates(Path(settings.training.candidates_file))
    return RetrieverCandidates(settings.endpoints.retriever, settings.training.retriever_timeout_s, settings.endpoints)
