from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RunStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUN_STATUS_UNSPECIFIED: _ClassVar[RunStatus]
    RUN_STATUS_QUEUED: _ClassVar[RunStatus]
    RUN_STATUS_RUNNING: _ClassVar[RunStatus]
    RUN_STATUS_SUCCEEDED: _ClassVar[RunStatus]
    RUN_STATUS_FAILED: _ClassVar[RunStatus]
    RUN_STATUS_CANCELLED: _ClassVar[RunStatus]
    RUN_STATUS_INTERRUPTED: _ClassVar[RunStatus]
RUN_STATUS_UNSPECIFIED: RunStatus
RUN_STATUS_QUEUED: RunStatus
RUN_STATUS_RUNNING: RunStatus
RUN_STATUS_SUCCEEDED: RunStatus
RUN_STATUS_FAILED: RunStatus
RUN_STATUS_CANCELLED: RunStatus
RUN_STATUS_INTERRUPTED: RunStatus

class MineRequest(_message.Message):
    __slots__ = ("corpus_id", "sources", "golden_path", "qrels_split")
    CORPUS_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    GOLDEN_PATH_FIELD_NUMBER: _ClassVar[int]
    QRELS_SPLIT_FIELD_NUMBER: _ClassVar[int]
    corpus_id: str
    sources: _containers.RepeatedScalarFieldContainer[str]
    golden_path: str
    qrels_split: str
    def __init__(self, corpus_id: _Optional[str] = ..., sources: _Optional[_Iterable[str]] = ..., golden_path: _Optional[str] = ..., qrels_split: _Optional[str] = ...) -> None: ...

class MineResponse(_message.Message):
    __slots__ = ("mining_run_id", "triplets_by_source", "files")
    class TripletsBySourceEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    MINING_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    TRIPLETS_BY_SOURCE_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    mining_run_id: str
    triplets_by_source: _containers.ScalarMap[str, int]
    files: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, mining_run_id: _Optional[str] = ..., triplets_by_source: _Optional[_Mapping[str, int]] = ..., files: _Optional[_Iterable[str]] = ...) -> None: ...

class TrainRequest(_message.Message):
    __slots__ = ("corpus_id", "start_from", "triplet_files", "overrides")
    class OverridesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CORPUS_ID_FIELD_NUMBER: _ClassVar[int]
    START_FROM_FIELD_NUMBER: _ClassVar[int]
    TRIPLET_FILES_FIELD_NUMBER: _ClassVar[int]
    OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    corpus_id: str
    start_from: str
    triplet_files: _containers.RepeatedScalarFieldContainer[str]
    overrides: _containers.ScalarMap[str, str]
    def __init__(self, corpus_id: _Optional[str] = ..., start_from: _Optional[str] = ..., triplet_files: _Optional[_Iterable[str]] = ..., overrides: _Optional[_Mapping[str, str]] = ...) -> None: ...

class TrainResponse(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class Run(_message.Message):
    __slots__ = ("run_id", "corpus_id", "status", "created_at", "finished_at", "error", "settings", "metrics", "triplet_files", "version_id", "base_model", "data")
    class SettingsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class DataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    CORPUS_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    TRIPLET_FILES_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    corpus_id: str
    status: RunStatus
    created_at: str
    finished_at: str
    error: str
    settings: _containers.ScalarMap[str, str]
    metrics: _containers.ScalarMap[str, float]
    triplet_files: _containers.RepeatedScalarFieldContainer[str]
    version_id: str
    base_model: str
    data: _containers.ScalarMap[str, float]
    def __init__(self, run_id: _Optional[str] = ..., corpus_id: _Optional[str] = ..., status: _Optional[_Union[RunStatus, str]] = ..., created_at: _Optional[str] = ..., finished_at: _Optional[str] = ..., error: _Optional[str] = ..., settings: _Optional[_Mapping[str, str]] = ..., metrics: _Optional[_Mapping[str, float]] = ..., triplet_files: _Optional[_Iterable[str]] = ..., version_id: _Optional[str] = ..., base_model: _Optional[str] = ..., data: _Optional[_Mapping[str, float]] = ...) -> None: ...

class GetRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class ListRunsRequest(_message.Message):
    __slots__ = ("corpus_id",)
    CORPUS_ID_FIELD_NUMBER: _ClassVar[int]
    corpus_id: str
    def __init__(self, corpus_id: _Optional[str] = ...) -> None: ...

class ListRunsResponse(_message.Message):
    __slots__ = ("runs",)
    RUNS_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[Run]
    def __init__(self, runs: _Optional[_Iterable[_Union[Run, _Mapping]]] = ...) -> None: ...

class CancelRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class StreamRunMetricsRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class RunMetric(_message.Message):
    __slots__ = ("run_id", "step", "epoch", "name", "value", "status")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    step: int
    epoch: float
    name: str
    value: float
    status: str
    def __init__(self, run_id: _Optional[str] = ..., step: _Optional[int] = ..., epoch: _Optional[float] = ..., name: _Optional[str] = ..., value: _Optional[float] = ..., status: _Optional[str] = ...) -> None: ...

class EvaluateRequest(_message.Message):
    __slots__ = ("corpus_id", "challenger", "champion")
    CORPUS_ID_FIELD_NUMBER: _ClassVar[int]
    CHALLENGER_FIELD_NUMBER: _ClassVar[int]
    CHAMPION_FIELD_NUMBER: _ClassVar[int]
    corpus_id: str
    challenger: str
    champion: str
    def __init__(self, corpus_id: _Optional[str] = ..., challenger: _Optional[str] = ..., champion: _Optional[str] = ...) -> None: ...

class EvaluateResponse(_message.Message):
    __slots__ = ("eval_id", "champion_metrics", "challenger_metrics", "ndcg_gain", "p_value")
    class ChampionMetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class ChallengerMetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    EVAL_ID_FIELD_NUMBER: _ClassVar[int]
    CHAMPION_METRICS_FIELD_NUMBER: _ClassVar[int]
    CHALLENGER_METRICS_FIELD_NUMBER: _ClassVar[int]
    NDCG_GAIN_FIELD_NUMBER: _ClassVar[int]
    P_VALUE_FIELD_NUMBER: _ClassVar[int]
    eval_id: str
    champion_metrics: _containers.ScalarMap[str, float]
    challenger_metrics: _containers.ScalarMap[str, float]
    ndcg_gain: float
    p_value: float
    def __init__(self, eval_id: _Optional[str] = ..., champion_metrics: _Optional[_Mapping[str, float]] = ..., challenger_metrics: _Optional[_Mapping[str, float]] = ..., ndcg_gain: _Optional[float] = ..., p_value: _Optional[float] = ...) -> None: ...

class PromoteRequest(_message.Message):
    __slots__ = ("corpus_id", "version_id", "force")
    CORPUS_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    corpus_id: str
    version_id: str
    force: bool
    def __init__(self, corpus_id: _Optional[str] = ..., version_id: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class PromoteResponse(_message.Message):
    __slots__ = ("promoted", "champion", "reason", "numbers")
    class NumbersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    PROMOTED_FIELD_NUMBER: _ClassVar[int]
    CHAMPION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    NUMBERS_FIELD_NUMBER: _ClassVar[int]
    promoted: bool
    champion: str
    reason: str
    numbers: _containers.ScalarMap[str, float]
    def __init__(self, promoted: _Optional[bool] = ..., champion: _Optional[str] = ..., reason: _Optional[str] = ..., numbers: _Optional[_Mapping[str, float]] = ...) -> None: ...

class RollbackRequest(_message.Message):
    __slots__ = ("corpus_id",)
    CORPUS_ID_FIELD_NUMBER: _ClassVar[int]
    corpus_id: str
    def __init__(self, corpus_id: _Optional[str] = ...) -> None: ...

class EventStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class EventStatsResponse(_message.Message):
    __slots__ = ("by_type", "by_corpus", "by_day", "total")
    class ByTypeEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class ByCorpusEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class ByDayEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    BY_TYPE_FIELD_NUMBER: _ClassVar[int]
    BY_CORPUS_FIELD_NUMBER: _ClassVar[int]
    BY_DAY_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    by_type: _containers.ScalarMap[str, int]
    by_corpus: _containers.ScalarMap[str, int]
    by_day: _containers.ScalarMap[str, int]
    total: int
    def __init__(self, by_type: _Optional[_Mapping[str, int]] = ..., by_corpus: _Optional[_Mapping[str, int]] = ..., by_day: _Optional[_Mapping[str, int]] = ..., total: _Optional[int] = ...) -> None: ...

class StartExperimentRequest(_message.Message):
    __slots__ = ("corpus_id", "challenger_version", "share", "query_budget", "shadow")
    CORPUS_ID_FIELD_NUMBER: _ClassVar[int]
    CHALLENGER_VERSION_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    QUERY_BUDGET_FIELD_NUMBER: _ClassVar[int]
    SHADOW_FIELD_NUMBER: _ClassVar[int]
    corpus_id: str
    challenger_version: str
    share: float
    query_budget: int
    shadow: bool
    def __init__(self, corpus_id: _Optional[str] = ..., challenger_version: _Optional[str] = ..., share: _Optional[float] = ..., query_budget: _Optional[int] = ..., shadow: _Optional[bool] = ...) -> None: ...

class GetExperimentRequest(_message.Message):
    __slots__ = ("corpus_id", "with_progress")
    CORPUS_ID_FIELD_NUMBER: _ClassVar[int]
    WITH_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    corpus_id: str
    with_progress: bool
    def __init__(self, corpus_id: _Optional[str] = ..., with_progress: _Optional[bool] = ...) -> None: ...

class StopExperimentRequest(_message.Message):
    __slots__ = ("corpus_id", "reason")
    CORPUS_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    corpus_id: str
    reason: str
    def __init__(self, corpus_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class Experiment(_message.Message):
    __slots__ = ("experiment_id", "corpus_id", "champion_version", "challenger_version", "share", "query_budget", "alpha", "state", "reason", "wins", "losses", "ties", "p_value", "started_ms", "ended_ms", "progress", "shadow")
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    CORPUS_ID_FIELD_NUMBER: _ClassVar[int]
    CHAMPION_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHALLENGER_VERSION_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    QUERY_BUDGET_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    WINS_FIELD_NUMBER: _ClassVar[int]
    LOSSES_FIELD_NUMBER: _ClassVar[int]
    TIES_FIELD_NUMBER: _ClassVar[int]
    P_VALUE_FIELD_NUMBER: _ClassVar[int]
    STARTED_MS_FIELD_NUMBER: _ClassVar[int]
    ENDED_MS_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    SHADOW_FIELD_NUMBER: _ClassVar[int]
    experiment_id: str
    corpus_id: str
    champion_version: str
    challenger_version: str
    share: float
    query_budget: int
    alpha: float
    state: str
    reason: str
    wins: int
    losses: int
    ties: int
    p_value: float
    started_ms: int
    ended_ms: int
    progress: _containers.RepeatedCompositeFieldContainer[ExperimentPoint]
    shadow: bool
    def __init__(self, experiment_id: _Optional[str] = ..., corpus_id: _Optional[str] = ..., champion_version: _Optional[str] = ..., challenger_version: _Optional[str] = ..., share: _Optional[float] = ..., query_budget: _Optional[int] = ..., alpha: _Optional[float] = ..., state: _Optional[str] = ..., reason: _Optional[str] = ..., wins: _Optional[int] = ..., losses: _Optional[int] = ..., ties: _Optional[int] = ..., p_value: _Optional[float] = ..., started_ms: _Optional[int] = ..., ended_ms: _Optional[int] = ..., progress: _Optional[_Iterable[_Union[ExperimentPoint, _Mapping]]] = ..., shadow: _Optional[bool] = ...) -> None: ...

class ExperimentPoint(_message.Message):
    __slots__ = ("at_ms", "wins", "losses", "ties", "p_value")
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    WINS_FIELD_NUMBER: _ClassVar[int]
    LOSSES_FIELD_NUMBER: _ClassVar[int]
    TIES_FIELD_NUMBER: _ClassVar[int]
    P_VALUE_FIELD_NUMBER: _ClassVar[int]
    at_ms: int
    wins: int
    losses: int
    ties: int
    p_value: float
    def __init__(self, at_ms: _Optional[int] = ..., wins: _Optional[int] = ..., losses: _Optional[int] = ..., ties: _Optional[int] = ..., p_value: _Optional[float] = ...) -> None: ...
