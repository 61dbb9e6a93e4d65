from services.proto.feedrank.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ShownResult(_message.Message):
    __slots__ = ("doc_id", "rank", "legs", "rerank_score", "ranked_rank", "team")
    DOC_ID_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    LEGS_FIELD_NUMBER: _ClassVar[int]
    RERANK_SCORE_FIELD_NUMBER: _ClassVar[int]
    RANKED_RANK_FIELD_NUMBER: _ClassVar[int]
    TEAM_FIELD_NUMBER: _ClassVar[int]
    doc_id: str
    rank: int
    legs: _common_pb2.LegScores
    rerank_score: float
    ranked_rank: int
    team: str
    def __init__(self, doc_id: _Optional[str] = ..., rank: _Optional[int] = ..., legs: _Optional[_Union[_common_pb2.LegScores, _Mapping]] = ..., rerank_score: _Optional[float] = ..., ranked_rank: _Optional[int] = ..., team: _Optional[str] = ...) -> None: ...

class Impression(_message.Message):
    __slots__ = ("corpus_id", "query", "results", "model_version", "intervention", "intervention_depth", "experiment_id")
    CORPUS_ID_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    INTERVENTION_FIELD_NUMBER: _ClassVar[int]
    INTERVENTION_DEPTH_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    corpus_id: str
    query: str
    results: _containers.RepeatedCompositeFieldContainer[ShownResult]
    model_version: str
    intervention: str
    intervention_depth: int
    experiment_id: str
    def __init__(self, corpus_id: _Optional[str] = ..., query: _Optional[str] = ..., results: _Optional[_Iterable[_Union[ShownResult, _Mapping]]] = ..., model_version: _Optional[str] = ..., intervention: _Optional[str] = ..., intervention_depth: _Optional[int] = ..., experiment_id: _Optional[str] = ...) -> None: ...

class Click(_message.Message):
    __slots__ = ("doc_id", "rank", "dwell_ms")
    DOC_ID_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    DWELL_MS_FIELD_NUMBER: _ClassVar[int]
    doc_id: str
    rank: int
    dwell_ms: int
    def __init__(self, doc_id: _Optional[str] = ..., rank: _Optional[int] = ..., dwell_ms: _Optional[int] = ...) -> None: ...

class Rating(_message.Message):
    __slots__ = ("doc_id", "rating", "rank")
    DOC_ID_FIELD_NUMBER: _ClassVar[int]
    RATING_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    doc_id: str
    rating: int
    rank: int
    def __init__(self, doc_id: _Optional[str] = ..., rating: _Optional[int] = ..., rank: _Optional[int] = ...) -> None: ...

class FeedbackEvent(_message.Message):
    __slots__ = ("event_id", "query_id", "session_id", "timestamp_ms", "source", "experiment_id", "impression", "click", "rating")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    IMPRESSION_FIELD_NUMBER: _ClassVar[int]
    CLICK_FIELD_NUMBER: _ClassVar[int]
    RATING_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    query_id: str
    session_id: str
    timestamp_ms: int
    source: str
    experiment_id: str
    impression: Impression
    click: Click
    rating: Rating
    def __init__(self, event_id: _Optional[str] = ..., query_id: _Optional[str] = ..., session_id: _Optional[str] = ..., timestamp_ms: _Optional[int] = ..., source: _Optional[str] = ..., experiment_id: _Optional[str] = ..., impression: _Optional[_Union[Impression, _Mapping]] = ..., click: _Optional[_Union[Click, _Mapping]] = ..., rating: _Optional[_Union[Rating, _Mapping]] = ...) -> None: ...

class RecordRequest(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[FeedbackEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[FeedbackEvent, _Mapping]]] = ...) -> None: ...

class RecordResponse(_message.Message):
    __slots__ = ("accepted", "spooled")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    SPOOLED_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    spooled: int
    def __init__(self, accepted: _Optional[int] = ..., spooled: _Optional[int] = ...) -> None: ...

class GetFeedbackInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class FeedbackInfo(_message.Message):
    __slots__ = ("build_version", "topic", "broker_connected", "spool_depth", "events_accepted")
    BUILD_VERSION_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    BROKER_CONNECTED_FIELD_NUMBER: _ClassVar[int]
    SPOOL_DEPTH_FIELD_NUMBER: _ClassVar[int]
    EVENTS_ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    build_version: str
    topic: str
    broker_connected: bool
    spool_depth: int
    events_accepted: int
    def __init__(self, build_version: _Optional[str] = ..., topic: _Optional[str] = ..., broker_connected: _Optional[bool] = ..., spool_depth: _Optional[int] = ..., events_accepted: _Optional[int] = ...) -> None: ...

class ModelPublished(_message.Message):
    __slots__ = ("version_id", "alias", "manifest_sha256", "corpus_id", "timestamp_ms")
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_SHA256_FIELD_NUMBER: _ClassVar[int]
    CORPUS_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    version_id: str
    alias: str
    manifest_sha256: str
    corpus_id: str
    timestamp_ms: int
    def __init__(self, version_id: _Optional[str] = ..., alias: _Optional[str] = ..., manifest_sha256: _Optional[str] = ..., corpus_id: _Optional[str] = ..., timestamp_ms: _Optional[int] = ...) -> None: ...
