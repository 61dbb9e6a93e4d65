from services.proto.feedrank.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FusionMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FUSION_METHOD_UNSPECIFIED: _ClassVar[FusionMethod]
    FUSION_METHOD_RRF: _ClassVar[FusionMethod]
    FUSION_METHOD_WEIGHTED: _ClassVar[FusionMethod]
    FUSION_METHOD_DBSF: _ClassVar[FusionMethod]

class Normalization(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NORMALIZATION_UNSPECIFIED: _ClassVar[Normalization]
    NORMALIZATION_MINMAX: _ClassVar[Normalization]
    NORMALIZATION_ZSCORE: _ClassVar[Normalization]
FUSION_METHOD_UNSPECIFIED: FusionMethod
FUSION_METHOD_RRF: FusionMethod
FUSION_METHOD_WEIGHTED: FusionMethod
FUSION_METHOD_DBSF: FusionMethod
NORMALIZATION_UNSPECIFIED: Normalization
NORMALIZATION_MINMAX: Normalization
NORMALIZATION_ZSCORE: Normalization

class FusionConfig(_message.Message):
    __slots__ = ("method", "rrf_k", "vector_weight", "sparse_weight", "normalization")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    RRF_K_FIELD_NUMBER: _ClassVar[int]
    VECTOR_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    SPARSE_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    NORMALIZATION_FIELD_NUMBER: _ClassVar[int]
    method: FusionMethod
    rrf_k: float
    vector_weight: float
    sparse_weight: float
    normalization: Normalization
    def __init__(self, method: _Optional[_Union[FusionMethod, str]] = ..., rrf_k: _Optional[float] = ..., vector_weight: _Optional[float] = ..., sparse_weight: _Optional[float] = ..., normalization: _Optional[_Union[Normalization, str]] = ...) -> None: ...

class RerankingConfig(_message.Message):
    __slots__ = ("reranker_mode", "reranker_local_model", "reranker_cloud_provider", "reranker_cloud_model", "tribrid_reranker_topn", "rerank_input_snippet_chars", "reranker_timeout")
    RERANKER_MODE_FIELD_NUMBER: _ClassVar[int]
    RERANKER_LOCAL_MODEL_FIELD_NUMBER: _ClassVar[int]
    RERANKER_CLOUD_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    RERANKER_CLOUD_MODEL_FIELD_NUMBER: _ClassVar[int]
    TRIBRID_RERANKER_TOPN_FIELD_NUMBER: _ClassVar[int]
    RERANK_INPUT_SNIPPET_CHARS_FIELD_NUMBER: _ClassVar[int]
    RERANKER_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    reranker_mode: str
    reranker_local_model: str
    reranker_cloud_provider: str
    reranker_cloud_model: str
    tribrid_reranker_topn: int
    rerank_input_snippet_chars: int
    reranker_timeout: float
    def __init__(self, reranker_mode: _Optional[str] = ..., reranker_local_model: _Optional[str] = ..., reranker_cloud_provider: _Optional[str] = ..., reranker_cloud_model: _Optional[str] = ..., tribrid_reranker_topn: _Optional[int] = ..., rerank_input_snippet_chars: _Optional[int] = ..., reranker_timeout: _Optional[float] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("corpus_id", "query", "top_k", "candidate_k", "fusion", "rerank_mode", "session_id", "model", "no_intervention")
    CORPUS_ID_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_K_FIELD_NUMBER: _ClassVar[int]
    FUSION_FIELD_NUMBER: _ClassVar[int]
    RERANK_MODE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    NO_INTERVENTION_FIELD_NUMBER: _ClassVar[int]
    corpus_id: str
    query: str
    top_k: int
    candidate_k: int
    fusion: FusionConfig
    rerank_mode: str
    session_id: str
    model: str
    no_intervention: bool
    def __init__(self, corpus_id: _Optional[str] = ..., query: _Optional[str] = ..., top_k: _Optional[int] = ..., candidate_k: _Optional[int] = ..., fusion: _Optional[_Union[FusionConfig, _Mapping]] = ..., rerank_mode: _Optional[str] = ..., session_id: _Optional[str] = ..., model: _Optional[str] = ..., no_intervention: _Optional[bool] = ...) -> None: ...

class SearchResult(_message.Message):
    __slots__ = ("doc_id", "title", "snippet", "legs", "rerank_score", "rank", "team")
    DOC_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    SNIPPET_FIELD_NUMBER: _ClassVar[int]
    LEGS_FIELD_NUMBER: _ClassVar[int]
    RERANK_SCORE_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    TEAM_FIELD_NUMBER: _ClassVar[int]
    doc_id: str
    title: str
    snippet: str
    legs: _common_pb2.LegScores
    rerank_score: float
    rank: int
    team: str
    def __init__(self, doc_id: _Optional[str] = ..., title: _Optional[str] = ..., snippet: _Optional[str] = ..., legs: _Optional[_Union[_common_pb2.LegScores, _Mapping]] = ..., rerank_score: _Optional[float] = ..., rank: _Optional[int] = ..., team: _Optional[str] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("query_id", "results", "model_version", "reranked", "degraded_reason", "timings", "lexical_ms", "vector_ms", "query_adapter_version", "experiment_id")
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    RERANKED_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_REASON_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    LEXICAL_MS_FIELD_NUMBER: _ClassVar[int]
    VECTOR_MS_FIELD_NUMBER: _ClassVar[int]
    QUERY_ADAPTER_VERSION_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    query_id: str
    results: _containers.RepeatedCompositeFieldContainer[SearchResult]
    model_version: str
    reranked: bool
    degraded_reason: str
    timings: _common_pb2.Timings
    lexical_ms: float
    vector_ms: float
    query_adapter_version: str
    experiment_id: str
    def __init__(self, query_id: _Optional[str] = ..., results: _Optional[_Iterable[_Union[SearchResult, _Mapping]]] = ..., model_version: _Optional[str] = ..., reranked: _Optional[bool] = ..., degraded_reason: _Optional[str] = ..., timings: _Optional[_Union[_common_pb2.Timings, _Mapping]] = ..., lexical_ms: _Optional[float] = ..., vector_ms: _Optional[float] = ..., query_adapter_version: _Optional[str] = ..., experiment_id: _Optional[str] = ...) -> None: ...

class GetConfigRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RetrievalConfig(_message.Message):
    __slots__ = ("fusion", "reranking")
    FUSION_FIELD_NUMBER: _ClassVar[int]
    RERANKING_FIELD_NUMBER: _ClassVar[int]
    fusion: FusionConfig
    reranking: RerankingConfig
    def __init__(self, fusion: _Optional[_Union[FusionConfig, _Mapping]] = ..., reranking: _Optional[_Union[RerankingConfig, _Mapping]] = ...) -> None: ...

class UpdateConfigRequest(_message.Message):
    __slots__ = ("fusion", "reranking", "update_mask")
    FUSION_FIELD_NUMBER: _ClassVar[int]
    RERANKING_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    fusion: FusionConfig
    reranking: RerankingConfig
    update_mask: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, fusion: _Optional[_Union[FusionConfig, _Mapping]] = ..., reranking: _Optional[_Union[RerankingConfig, _Mapping]] = ..., update_mask: _Optional[_Iterable[str]] = ...) -> None: ...

class ListCorporaRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CorpusInfo(_message.Message):
    __slots__ = ("corpus_id", "documents")
    CORPUS_ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    corpus_id: str
    documents: int
    def __init__(self, corpus_id: _Optional[str] = ..., documents: _Optional[int] = ...) -> None: ...

class ListCorporaResponse(_message.Message):
    __slots__ = ("corpora",)
    CORPORA_FIELD_NUMBER: _ClassVar[int]
    corpora: _containers.RepeatedCompositeFieldContainer[CorpusInfo]
    def __init__(self, corpora: _Optional[_Iterable[_Union[CorpusInfo, _Mapping]]] = ...) -> None: ...
