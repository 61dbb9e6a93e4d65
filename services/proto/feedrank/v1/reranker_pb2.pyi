from services.proto.feedrank.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RerankDocument(_message.Message):
    __slots__ = ("id", "text", "legs", "embedding")
    ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    LEGS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    id: str
    text: str
    legs: _common_pb2.LegScores
    embedding: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, id: _Optional[str] = ..., text: _Optional[str] = ..., legs: _Optional[_Union[_common_pb2.LegScores, _Mapping]] = ..., embedding: _Optional[_Iterable[float]] = ...) -> None: ...

class RerankRequest(_message.Message):
    __slots__ = ("query", "documents", "top_n", "model", "truncate", "return_text", "max_tokens_per_doc", "corpus_id")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    TOP_N_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TRUNCATE_FIELD_NUMBER: _ClassVar[int]
    RETURN_TEXT_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_PER_DOC_FIELD_NUMBER: _ClassVar[int]
    CORPUS_ID_FIELD_NUMBER: _ClassVar[int]
    query: str
    documents: _containers.RepeatedCompositeFieldContainer[RerankDocument]
    top_n: int
    model: str
    truncate: bool
    return_text: bool
    max_tokens_per_doc: int
    corpus_id: str
    def __init__(self, query: _Optional[str] = ..., documents: _Optional[_Iterable[_Union[RerankDocument, _Mapping]]] = ..., top_n: _Optional[int] = ..., model: _Optional[str] = ..., truncate: _Optional[bool] = ..., return_text: _Optional[bool] = ..., max_tokens_per_doc: _Optional[int] = ..., corpus_id: _Optional[str] = ...) -> None: ...

class RerankResult(_message.Message):
    __slots__ = ("index", "id", "score", "text")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    index: int
    id: str
    score: float
    text: str
    def __init__(self, index: _Optional[int] = ..., id: _Optional[str] = ..., score: _Optional[float] = ..., text: _Optional[str] = ...) -> None: ...

class RerankResponse(_message.Message):
    __slots__ = ("results", "model_version", "model_alias", "timings", "cached", "mode")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_ALIAS_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[RerankResult]
    model_version: str
    model_alias: str
    timings: _common_pb2.Timings
    cached: bool
    mode: str
    def __init__(self, results: _Optional[_Iterable[_Union[RerankResult, _Mapping]]] = ..., model_version: _Optional[str] = ..., model_alias: _Optional[str] = ..., timings: _Optional[_Union[_common_pb2.Timings, _Mapping]] = ..., cached: _Optional[bool] = ..., mode: _Optional[str] = ...) -> None: ...

class GetRerankerInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelVersionInfo(_message.Message):
    __slots__ = ("version_id", "base_model", "run_id", "kind", "max_length", "loaded_at", "metrics", "corpus_id", "weights_bytes")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MAX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    LOADED_AT_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    CORPUS_ID_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_BYTES_FIELD_NUMBER: _ClassVar[int]
    version_id: str
    base_model: str
    run_id: str
    kind: str
    max_length: int
    loaded_at: str
    metrics: _containers.ScalarMap[str, float]
    corpus_id: str
    weights_bytes: int
    def __init__(self, version_id: _Optional[str] = ..., base_model: _Optional[str] = ..., run_id: _Optional[str] = ..., kind: _Optional[str] = ..., max_length: _Optional[int] = ..., loaded_at: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ..., corpus_id: _Optional[str] = ..., weights_bytes: _Optional[int] = ...) -> None: ...

class AliasTargets(_message.Message):
    __slots__ = ("aliases",)
    class AliasesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    aliases: _containers.ScalarMap[str, str]
    def __init__(self, aliases: _Optional[_Mapping[str, str]] = ...) -> None: ...

class BatchingLimits(_message.Message):
    __slots__ = ("max_batch_pairs", "max_batch_tokens", "max_wait_ms", "max_queue_pairs", "max_documents", "max_text_bytes", "enabled", "policies")
    MAX_BATCH_PAIRS_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUE_PAIRS_FIELD_NUMBER: _ClassVar[int]
    MAX_DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    MAX_TEXT_BYTES_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    max_batch_pairs: int
    max_batch_tokens: int
    max_wait_ms: float
    max_queue_pairs: int
    max_documents: int
    max_text_bytes: int
    enabled: bool
    policies: _containers.RepeatedCompositeFieldContainer[BatchPolicy]
    def __init__(self, max_batch_pairs: _Optional[int] = ..., max_batch_tokens: _Optional[int] = ..., max_wait_ms: _Optional[float] = ..., max_queue_pairs: _Optional[int] = ..., max_documents: _Optional[int] = ..., max_text_bytes: _Optional[int] = ..., enabled: _Optional[bool] = ..., policies: _Optional[_Iterable[_Union[BatchPolicy, _Mapping]]] = ...) -> None: ...

class BatchPolicy(_message.Message):
    __slots__ = ("version_id", "pairs_per_s", "calibration_tokens", "gain", "merge", "batch_pairs")
    class PairsPerSEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: float
        def __init__(self, key: _Optional[int] = ..., value: _Optional[float] = ...) -> None: ...
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    PAIRS_PER_S_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    GAIN_FIELD_NUMBER: _ClassVar[int]
    MERGE_FIELD_NUMBER: _ClassVar[int]
    BATCH_PAIRS_FIELD_NUMBER: _ClassVar[int]
    version_id: str
    pairs_per_s: _containers.ScalarMap[int, float]
    calibration_tokens: int
    gain: float
    merge: bool
    batch_pairs: int
    def __init__(self, version_id: _Optional[str] = ..., pairs_per_s: _Optional[_Mapping[int, float]] = ..., calibration_tokens: _Optional[int] = ..., gain: _Optional[float] = ..., merge: _Optional[bool] = ..., batch_pairs: _Optional[int] = ...) -> None: ...

class CloudUsage(_message.Message):
    __slots__ = ("provider", "model", "billed_units", "estimated_cost_usd")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BILLED_UNITS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_COST_USD_FIELD_NUMBER: _ClassVar[int]
    provider: str
    model: str
    billed_units: int
    estimated_cost_usd: float
    def __init__(self, provider: _Optional[str] = ..., model: _Optional[str] = ..., billed_units: _Optional[int] = ..., estimated_cost_usd: _Optional[float] = ...) -> None: ...

class RerankerInfo(_message.Message):
    __slots__ = ("build_version", "mode", "backend", "providers", "loaded", "aliases", "limits", "last_reload_at", "last_reload_error", "swap_count", "cloud_usage", "precision", "corpus_aliases")
    class AliasesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class CorpusAliasesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: AliasTargets
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[AliasTargets, _Mapping]] = ...) -> None: ...
    BUILD_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    LOADED_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    LAST_RELOAD_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_RELOAD_ERROR_FIELD_NUMBER: _ClassVar[int]
    SWAP_COUNT_FIELD_NUMBER: _ClassVar[int]
    CLOUD_USAGE_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    CORPUS_ALIASES_FIELD_NUMBER: _ClassVar[int]
    build_version: str
    mode: str
    backend: str
    providers: _containers.RepeatedScalarFieldContainer[str]
    loaded: _containers.RepeatedCompositeFieldContainer[ModelVersionInfo]
    aliases: _containers.ScalarMap[str, str]
    limits: BatchingLimits
    last_reload_at: str
    last_reload_error: str
    swap_count: int
    cloud_usage: _containers.RepeatedCompositeFieldContainer[CloudUsage]
    precision: str
    corpus_aliases: _containers.MessageMap[str, AliasTargets]
    def __init__(self, build_version: _Optional[str] = ..., mode: _Optional[str] = ..., backend: _Optional[str] = ..., providers: _Optional[_Iterable[str]] = ..., loaded: _Optional[_Iterable[_Union[ModelVersionInfo, _Mapping]]] = ..., aliases: _Optional[_Mapping[str, str]] = ..., limits: _Optional[_Union[BatchingLimits, _Mapping]] = ..., last_reload_at: _Optional[str] = ..., last_reload_error: _Optional[str] = ..., swap_count: _Optional[int] = ..., cloud_usage: _Optional[_Iterable[_Union[CloudUsage, _Mapping]]] = ..., precision: _Optional[str] = ..., corpus_aliases: _Optional[_Mapping[str, AliasTargets]] = ...) -> None: ...
