"""Every knob of feedrank, in one place.

Settings come from (highest first) constructor arguments, environment variables
(`FEEDRANK_` prefix, `__` between group and field, e.g.
`FEEDRANK_RERANKING__RERANKER_MODE=local`), files in the folder named by `FEEDRANK_SECRETS_DIR`
(one file per setting, named like its environment variable: how Kubernetes mounts a Secret, so
tokens and passwords never sit in a process's environment), the YAML file named by
`FEEDRANK_CONFIG`, then the defaults below. Each field's description is its documentation; `feedrank config`
prints them all. Settings are frozen: a service builds them once at startup and requests
never mutate them (run-time changes build a new object and swap it in).
"""

from __future__ import annotations

import json
import os
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NestedSecretsSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from services.common.errors import invalid

SECRETS_DIR_ENV = "FEEDRANK_SECRETS_DIR"


class _Group(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def validated(group: str, cls: type, base: Any, changes: dict[str, Any]) -> Any:
    """`base` with `changes` applied, checked like the config; a bad value names its field (`group.name`)."""
    try:
        return cls(**{**base.model_dump(), **changes})
    except ValidationError as err:
        first = err.errors()[0]
        name = ".".join(str(p) for p in first["loc"])
        # A check across fields (a model validator) has no location: the group itself is at fault.
        raise invalid(f"{group}.{name}" if name else group, first["msg"]) from err


class EndpointSettings(_Group):
    """Where each service listens and where its clients find it."""

    retriever: str = Field("127.0.0.1:50051", description="Retriever gRPC host:port")
    reranker: str = Field("127.0.0.1:50052", description="Reranker gRPC host:port")
    feedback: str = Field("127.0.0.1:50053", description="Feedback gRPC host:port")
    trainer: str = Field("127.0.0.1:50054", description="Trainer gRPC host:port")
    gateway: str = Field("127.0.0.1:8000", description="HTTP gateway host:port")
    bind_host: str = Field(
        "127.0.0.1",
        description="Interface the gRPC servers, the gateway and the /metrics ports bind to. Anything beyond "
        "loopback (e.g. 0.0.0.0 in a pod) needs endpoints.admin_token set, or the service refuses to start",
    )
    metrics_port_offset: int = Field(
        1000, description="Prometheus /metrics listens on the gRPC port plus this; 0 disables it"
    )
    grace_seconds: float = Field(10.0, description="SIGTERM drain time for in-flight calls")
    admin_token: str = Field(
        "",
        description="Bearer token of every call that changes state (train, promote, rollback, mine, config, "
        "imports), of Evaluate and of naming a version id instead of an alias. Empty on loopback: the services "
        "and the CLI share $FEEDRANK_DATA_DIR/admin.token (created, mode 0600, on first use); empty beyond "
        "loopback: the service refuses to start",
    )
    read_token: str = Field(
        "",
        description="Bearer token Search, Rerank, feedback and the other reading calls require (the admin token "
        "is accepted too); empty = reading calls are open. Health checks and reflection never need a token",
    )
    tls_cert_file: str = Field(
        "", description="PEM certificate the gRPC servers present (and clients present when tls_ca_file is set, "
        "for servers that require mTLS); empty = plaintext"
    )
    tls_key_file: str = Field("", description="PEM private key of tls_cert_file")
    tls_client_ca_file: str = Field(
        "", description="PEM CA bundle; when set, the gRPC servers require client certificates it signed (mTLS)"
    )
    tls_ca_file: str = Field(
        "", description="PEM CA bundle gRPC clients verify the servers with; when set, every client channel uses TLS"
    )
    max_message_bytes: int = Field(
        64 * 1024 * 1024, ge=1024,
        description="Largest gRPC message every server and client channel sends or receives; a larger one is "
        "refused as INVALID_ARGUMENT (HTTP 413), never retried",
    )


class RerankingSettings(_Group):
    """How results are reranked (names kept from the seed system's config)."""

    reranker_mode: Literal["none", "local", "learning", "cloud"] = Field(
        "learning",
        description="none: input order; local: the version named by reranker_local_model; "
        "learning: follow the registry's champion alias; cloud: a hosted rerank API",
    )
    reranker_local_model: str = Field("champion", description="Alias or version id served in local mode")
    reranker_cloud_provider: Literal["cohere", "voyage", "jina"] = Field("cohere", description="Cloud provider")
    reranker_cloud_model: str = Field("rerank-v3.5", description="Cloud model name (see models.json)")
    reranker_cloud_base_url: str = Field("", description="Override the provider's API base URL (proxies, tests)")
    reranker_cloud_top_n: int = Field(
        50, ge=1, le=1000, description="At most this many documents are sent to a cloud API (providers cap at 1000)"
    )
    tribrid_reranker_topn: int = Field(
        100, ge=0,
        description="Fused candidates the retriever sends to the reranker. 100 suits the default bi-encoder "
        "versions (measured: the blend gains most over 100); with a cross-encoder champion on a CPU use 20-30",
    )
    rerank_input_snippet_chars: int = Field(2000, ge=0, description="Each document is cut to this many chars")
    reranker_timeout: float = Field(10.0, gt=0, description="Seconds a rerank call (local or cloud) may take")
    max_documents: int = Field(1000, ge=1, description="Most documents one Rerank request may carry")
    max_text_bytes: int = Field(65536, ge=1, description="Largest query or document text, in UTF-8 bytes")
    model_map: dict[str, str] = Field(
        {"default": ""},
        description="The drop-in rerank routes' (Cohere, Jina, Voyage, Mixedbread) `model` names -> the alias or "
        'version id that serves them ("" = what the reranker serves by default: the champion, or '
        "reranker_local_model in local mode). A name listed here is mapped; else a feedrank alias or registry "
        'version id is served as named; else the "default" entry; with no "default", the name is refused '
        "naming `model`. So rerank-v3.5, jina-reranker-v2-base-multilingual, ... work with the default map",
    )
    passage_window_tokens: int = Field(
        0, ge=0, le=8192,
        description="A document longer than this many tokens (of the served version's tokenizer) is scored as "
        "passages of this many tokens (with truncate=true, the default; truncate=false refuses it instead). 0 = as "
        "many as fit beside the query in the version's max length; a larger value is capped by that. At least 16",
    )
    passage_stride_tokens: int = Field(
        0, ge=0, le=8192,
        description="Tokens from one passage's start to the next (consecutive passages overlap by window - stride); "
        "0 = half the window; at most passage_window_tokens (and capped by the window when that is sized to fit)",
    )
    passage_aggregate: Literal["max", "first", "mean_top2"] = Field(
        "mean_top2",
        description="A long document's score from its passages' scores: mean_top2 (the mean of the best two; a "
        "document of one passage keeps its score), max (MaxP), first (FirstP: the first window only, which is what "
        "truncation scores, at no extra cost). mean_top2 measured best on SciFact (bench/passages.py)",
    )
    max_passages_per_doc: int = Field(
        8, ge=1, le=64,
        description="Most passages scored per document (its first ones); the text past them is not seen. "
        "Documents are also cut to rerank_input_snippet_chars characters before they are split",
    )

    @field_validator("passage_window_tokens")
    @classmethod
    def _window_fits_a_passage(cls, window: int) -> int:
        if 0 < window < 16:
            raise ValueError("must be 0 (fit the model) or at least 16 tokens")
        return window

    @field_validator("passage_stride_tokens")
    @classmethod
    def _stride_within_window(cls, stride: int, info: ValidationInfo) -> int:
        window = info.data.get("passage_window_tokens", 0)
        if window and stride > window:
            raise ValueError(f"must be at most passage_window_tokens ({window}): a stride past the window skips text")
        return stride


class EngineSettings(_Group):
    """The ONNX runtime and the dynamic batcher of the reranker (and the retriever's embedder)."""

    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto picks CUDA when onnxruntime-gpu sees a GPU, else CPU"
    )
    precision: Literal["fp32", "fp16", "int8"] = Field(
        "fp32", description="fp16 applies on CUDA only; int8 is dynamic quantization for CPU"
    )
    intra_op_threads: int = Field(
        0, ge=0, description="onnxruntime intra-op threads; 0 = the cores this process may use (CPU affinity, "
        "capped by the cgroup CPU quota), not the host's count"
    )
    optimize_graphs: bool = Field(
        True, description="Serve fp32 graphs fused by onnxruntime's transformer optimizer (attention, LayerNorm, "
        "GELU), made once per graph and cached by its sha256 under graph_cache_dir; the registry stays untouched"
    )
    graph_cache_dir: str = Field(
        "", description="Where fused graphs are cached; empty = $XDG_CACHE_HOME/feedrank/graphs (~/.cache/...)"
    )
    max_length: int = Field(0, ge=0, description="Token limit per pair; 0 = the version's training length")
    batching_enabled: bool = Field(True, description="Coalesce pairs of concurrent requests into batches")
    max_batch_pairs: int = Field(32, ge=1, description="Most pairs in one forward pass")
    max_batch_tokens: int = Field(16384, ge=1, description="Most padded tokens in one forward pass")
    max_wait_ms: float = Field(2.0, ge=0, description="How long a batch waits for more pairs once work is queued")
    batch_warmup_s: float = Field(
        2.0, ge=0, description="Time spent measuring each loaded version's batch curve (pairs/s by batch size) "
        "before its first batch; 0 = no curve: merge requests whenever batching_enabled, up to max_batch_pairs"
    )
    batch_min_gain: float = Field(
        1.1, ge=1, description="Concurrent requests are merged (and waited for) only when the curve's best "
        "pairs/s beats batch size 1 by this factor; otherwise each request runs alone, as with batching off"
    )
    batch_calibration_tokens: int = Field(
        128, ge=8, description="Tokens per pair when measuring the batch curve (capped by the version's max length)"
    )
    max_queue_pairs: int = Field(8192, ge=1, description="Queued pairs beyond this are refused (RESOURCE_EXHAUSTED)")
    cache_entries: int = Field(2048, ge=0, description="Result-cache size in requests; 0 disables the cache")
    doc_vector_cache: int = Field(
        50000, ge=0, description="Document vectors a bi-encoder version keeps (LRU by text digest); 0 disables"
    )
    watch_interval_s: float = Field(2.0, gt=0, description="How often the reranker checks the registry aliases")
    follow_model_events: bool = Field(
        True, description="In learning mode, also swap as soon as Kafka topic kafka.topics.models announces a version"
    )
    trust_remote_code: bool = Field(False, description="Allow model code from imported model directories")


class FusionSettings(_Group):
    """How the retriever merges its lexical and vector legs (changeable at run time via UpdateConfig)."""

    method: Literal["rrf", "weighted", "dbsf"] = Field("rrf", description="How the two legs are fused")
    rrf_k: float = Field(60.0, gt=0, description="RRF constant k")
    vector_weight: float = Field(
        0.5, ge=0, description="Weight of the vector leg (every method; RRF scales the two weights to average 1, so "
        "equal weights are plain RRF). A corpus's champion may carry its own learned weights, served instead "
        "(training.fusion_choice)"
    )
    sparse_weight: float = Field(0.5, ge=0, description="Weight of the lexical leg (as vector_weight)")
    normalization: Literal["minmax", "zscore"] = Field("minmax", description="Score normalisation for weighted")

    @model_validator(mode="after")
    def _some_leg_counts(self) -> FusionSettings:
        if self.vector_weight == 0 and self.sparse_weight == 0:
            raise ValueError("vector_weight and sparse_weight are both 0: at least one leg must count")
        return self


class RetrievalSettings(_Group):
    """The retriever's backends, ingestion and search defaults."""

    lexical_backend: Literal["tantivy", "opensearch"] = Field(
        "tantivy", description="BM25 engine: tantivy = embedded on-disk index; opensearch = a server"
    )
    vector_backend: Literal["edge", "qdrant"] = Field(
        "edge", description="edge = in-process qdrant-edge shard on disk; qdrant = a Qdrant server"
    )
    opensearch_url: str = Field("http://127.0.0.1:9200", description="OpenSearch URL (lexical_backend=opensearch)")
    opensearch_index_prefix: str = Field("feedrank-", description="OpenSearch index name = prefix + corpus id")
    opensearch_bulk_retries: int = Field(3, ge=0, description="Retries of a failed OpenSearch bulk request")
    opensearch_timeout_s: float = Field(30.0, gt=0, description="OpenSearch request timeout")
    qdrant_url: str = Field("http://127.0.0.1:6333", description="Qdrant URL (vector_backend=qdrant)")
    qdrant_collection_prefix: str = Field("feedrank-", description="Qdrant collection name = prefix + corpus id")
    qdrant_api_key: str = Field(
        "", description="Qdrant API key sent with every request; empty = none. Serving retrievers get the server's "
        "read-only key, ingest its read-write key (deploy/k8s)"
    )
    opensearch_username: str = Field(
        "", description="OpenSearch basic-auth user (security plugin on); empty = no auth. Serving retrievers use a "
        "user with read access to the feedrank indexes, ingest one with write access"
    )
    opensearch_password: str = Field("", description="Password of retrieval.opensearch_username")
    opensearch_ca_file: str = Field(
        "", description="PEM CA bundle that verifies OpenSearch's HTTPS certificate; empty = the system CAs"
    )
    bm25_k1: float = Field(
        0.9, gt=0, description="BM25 k1 (OpenSearch index similarity; tantivy's BM25 is fixed at k1=1.2)"
    )
    bm25_b: float = Field(
        0.4, ge=0, le=1, description="BM25 b (OpenSearch index similarity; tantivy's BM25 is fixed at b=0.75)"
    )
    embedder_max_length: int = Field(256, ge=8, description="Token limit of the bi-encoder")
    embed_batch_size: int = Field(
        64, ge=1, description="Most documents in one forward pass at ingest (engine.max_batch_tokens caps the "
        "padded tokens too)"
    )
    ingest_window_docs: int = Field(
        512, ge=1, description="Documents read and embedded together at ingest; each window is sorted by token "
        "count before batching, so a wider one pads less (progress advances once per window)"
    )
    ingest_threads: int = Field(
        0, ge=0, description="onnxruntime threads of the bi-encoder in offline work (ingest, eval); 0 = all cores"
    )
    embedder_threads: int = Field(
        1, ge=0, description="onnxruntime threads of the bi-encoder (0 = physical cores); one thread embeds "
        "a short query fastest, and measured 2.4x faster than two on a busy 2-core machine"
    )
    query_precision: Literal["fp32", "int8"] = Field(
        "int8", description="Graph that embeds a served query. int8 (dynamic "
        "quantization) measured 2.4 ms vs 6.1 ms per SciFact query on one core, dense nDCG@10 0.647 vs 0.645, "
        "Recall@100 0.923 vs 0.925; on CUDA the fp32 graph runs either way"
    )
    doc_precision: Literal["fp32", "int8"] = Field(
        "fp32", description="Graph that embeds documents at ingest (documents already ingested keep their vectors; "
        "re-ingest with prune after changing it). int8 is 1.7x the documents/s of fp32 (256 SciFact abstracts, "
        "2-core Xeon, both timed in one run) and measured dense nDCG@10 0.64315 = fp32 on SciFact test, but "
        "0.7157 vs 0.7226 on CoSQA's quick demo (-0.007, over the 0.003 int8 may cost): fp32 stays the default"
    )
    top_k: int = Field(10, ge=1, le=1000, description="Results returned when a request does not say")
    candidate_k: int = Field(100, ge=1, le=1000, description="Depth of each leg before fusion")
    max_top_k: int = Field(1000, ge=1, description="Largest top_k or candidate_k a request may ask for")
    max_query_bytes: int = Field(
        16384, ge=1, description="Longest query a Search may carry, in UTF-8 bytes (longer: INVALID_ARGUMENT on query)"
    )
    max_query_terms: int = Field(
        1024, ge=1, description="Most whitespace-separated terms in a Search query (more: INVALID_ARGUMENT on query)"
    )
    snippet_chars: int = Field(300, ge=0, description="Length of the snippet returned with each result")
    send_vectors_to_reranker: bool = Field(
        True, description="Send each candidate's dense vector with the rerank request, so bi-encoder versions "
        "need not re-embed documents"
    )
    follow_model_adapter: bool = Field(
        True, description="The vector leg embeds queries through the query adapter of the version that reranks "
        "(a query-adapter version trained for this corpus), read from the registry"
    )
    adapter_refresh_s: float = Field(
        1.0, gt=0, description="How long the retriever trusts an alias target before reading the registry again"
    )
    config_refresh_s: float = Field(
        1.0, ge=0, description="How often a replica rereads the runtime config that UpdateConfig on any replica "
        "writes ($FEEDRANK_DATA_DIR/retriever/config.json): the longest a replica serves an older fusion/reranking"
    )
    impression_sample_rate: float = Field(1.0, ge=0, le=1, description="Share of searches logged as impressions")
    impression_timeout_s: float = Field(
        0.5, gt=0, description="Deadline of the fire-and-forget impression call to the feedback service"
    )
    dataset_url: str = Field(
        "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip",
        description="Where `feedrank ingest --dataset NAME` downloads a BEIR dataset from",
    )
    repo_window_lines: int = Field(60, ge=5, description="Lines per chunk for code without a function/class parser")
    repo_window_overlap: int = Field(10, ge=0, description="Lines shared by consecutive line-window chunks")
    repo_max_file_bytes: int = Field(1_000_000, ge=1, description="Source files larger than this are skipped")

    @model_validator(mode="after")
    def _credentials_complete(self) -> RetrievalSettings:
        if bool(self.opensearch_username) != bool(self.opensearch_password):
            raise ValueError("opensearch_username and opensearch_password are set together or not at all")
        return self


class KafkaTopics(_Group):
    feedback: str = Field("feedrank.feedback.v1", description="Feedback events topic")
    models: str = Field("feedrank.models.v1", description="Model-published topic")


class KafkaSettings(_Group):
    bootstrap_servers: str = Field("127.0.0.1:9092", description="Comma-separated broker list")
    topics: KafkaTopics = KafkaTopics()
    partitions: int = Field(3, ge=1, description="Partitions of topics feedrank creates")
    replication_factor: int = Field(1, ge=1, description="Replication of topics feedrank creates")
    consumer_group: str = Field("feedrank-trainer", description="Consumer group of the trainer's event store")
    # Tansu's group join waits about session_timeout/2, so a short session keeps joins quick.
    session_timeout_ms: int = Field(10000, description="Consumer session timeout")
    heartbeat_interval_ms: int = Field(3000, description="Consumer heartbeat")
    fetch_max_wait_ms: int = Field(50, description="Longest a fetch waits for data")
    request_timeout_ms: int = Field(5000, description="Producer/consumer request timeout")
    producer_retries: int = Field(5, ge=0, description="Producer resends of a batch the broker refused or lost")
    delivery_timeout_ms: int = Field(
        30000, ge=1000, description="Producer gives up on a record after this (it is in the spool by then)"
    )
    linger_ms: int = Field(5, ge=0, description="Producer waits this long to fill a batch")
    connect_timeout_ms: int = Field(2000, ge=100, description="How long one attempt to reach the broker waits")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How clients reach the brokers: SASL_SSL = SASL login over TLS (deploy/k8s), "
        "PLAINTEXT = neither (the development broker)"
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism (security_protocol SASL_*)"
    )
    sasl_username: str = Field("", description="SASL user (security_protocol SASL_*)")
    sasl_password: str = Field("", description="SASL password (security_protocol SASL_*)")
    ssl_cafile: str = Field(
        "", description="PEM CA bundle that verifies the brokers' certificates (security_protocol *SSL); "
        "empty = the system CAs"
    )

    @model_validator(mode="after")
    def _sasl_credentials(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL_") and not (self.sasl_username and self.sasl_password):
            raise ValueError(f"security_protocol {self.security_protocol} needs sasl_username and sasl_password")
        return self


class FeedbackSettings(_Group):
    spool_dir: str = Field("", description="Spool folder; empty = $FEEDRANK_DATA_DIR/spool")
    max_events_per_request: int = Field(1000, ge=1, description="Largest batch one Record call may carry")
    max_event_bytes: int = Field(262144, ge=1, description="Largest serialized event")
    max_future_skew_s: float = Field(300.0, ge=0, description="Timestamps further ahead than this are refused")
    send_timeout_s: float = Field(2.0, gt=0, description="How long a Record waits for Kafka before spooling")
    max_stream_events: int = Field(
        100000, ge=1, description="Most events one RecordStream may carry (it is recorded as one batch)"
    )
    max_id_chars: int = Field(256, ge=8, description="Longest event_id, session_id or doc_id")
    drain_batch: int = Field(500, ge=1, description="Spooled events sent to Kafka per drain round")
    retry_interval_s: float = Field(1.0, gt=0, description="Pause between attempts to reach a down broker")
    spool_max_bytes: int = Field(
        1 << 30, ge=0, description="Largest the spool log may grow while Kafka is away; an event past it is refused "
        "with RESOURCE_EXHAUSTED (the spool is full), never acknowledged; 0 = unbounded",
    )
    max_stream_bytes: int = Field(
        64 << 20, ge=1, description="Most serialized event bytes one RecordStream may carry (it is held in memory "
        "until recorded as one batch)",
    )
    signing_key: str = Field(
        "", description="HMAC key the retriever signs query_ids with and the feedback service verifies them with; "
        "empty = a random key made once in $FEEDRANK_DATA_DIR/feedback-signing.key (mode 0600), which only "
        "services sharing that data dir share: multi-host deployments must set this on every retriever and "
        "feedback replica",
    )
    query_id_ttl_s: float = Field(
        86400.0, gt=0, description="How long after its search a query_id is accepted in feedback"
    )
    max_query_id_chars: int = Field(
        8192, ge=64, description="Longest query_id (a signed query_id grows with the results shown: ~6 chars each)"
    )
    max_events_per_query: int = Field(
        64, ge=1, description="Most clicks and ratings accepted for one query_id (per feedback replica)"
    )
    max_events_per_session: int = Field(
        600, ge=1, description="Most clicks and ratings accepted from one session_id per session_window_s "
        "(per feedback replica)",
    )
    session_window_s: float = Field(60.0, gt=0, description="Window of max_events_per_session")
    tracked_queries: int = Field(
        200_000, ge=1, description="query_ids (and sessions) whose counts the caps remember; the oldest are "
        "forgotten first",
    )


class AdapterSettings(_Group):
    """training.adapter: the query-adapter recipe (services/trainer/adapter.py) and its head (heads.py)."""

    epochs: int = Field(100, ge=1, description="Full-batch epochs (one Adam step each)")
    lr: float = Field(1e-3, gt=0, description="Adam learning rate")
    weight_decay: float = Field(0.01, ge=0, description="Adam weight decay on W")
    scale: float = Field(
        20.0, gt=0, description="Softmax temperature (cosines x scale) over the whole corpus"
    )
    eval_every: int = Field(
        10, ge=1, description="Dev nDCG@10 every this many epochs; the best W so far is kept (early stop)"
    )
    query_max_length: int = Field(
        64, ge=8, description="Token limit of the query tower (training and the served version)"
    )
    blend_depths: list[int] = Field(
        default_factory=lambda: [10, 20, 30, 50, 100],
        description="Blend depths tried on the dev split; values above eval_rerank_depth are cut to it "
        "(the reranker only ever sees reranking.tribrid_reranker_topn candidates; SciFact's best was 100)",
    )
    blend_weights: list[float] = Field(
        default_factory=lambda: [round(0.1 * i, 1) for i in range(11)],
        description="Blend weights of the adapted cosine tried on the dev split (0 = the fused order)",
    )
    linear_head_depth: int = Field(
        30, ge=1, description="Fused candidates the linear head re-scores (cut to eval_rerank_depth; "
        "bench/learning.md measured its best at 30)"
    )
    linear_head_c: float = Field(
        1.0, gt=0, description="Inverse L2 strength of the linear head's logistic regression"
    )
    head_cv_folds: int = Field(
        5, ge=2, description="Folds over the dev queries when choosing blend vs linear head"
    )


class MiningSettings(_Group):
    """training.mining: how feedback becomes triplets (services/trainer/mining.py)."""

    dwell_threshold_ms: int = Field(10000, ge=0, description="A click is a positive when dwell >= this")
    positive_min_rating: int = Field(4, ge=1, le=5, description="Ratings >= this are positives")
    negative_max_rating: int = Field(2, ge=1, le=5, description="Ratings <= this are negatives")
    propensity_weights: bool = Field(
        False, description="Weight click positives by 1/propensity of their rank, the corpus's measured "
        "propensities (services/trainer/propensity.py); unweighted while none are measured"
    )
    hard_negative_depth: int = Field(
        30, ge=1, le=1000, description="Depth of each retriever leg searched for hard negatives"
    )
    hard_negative_max_ratio: float = Field(
        0.95, gt=0, le=1,
        description="A retrieved negative scoring above this share of the positive's fused score is "
        "dropped as a likely false negative",
    )
    random_negative_share: float = Field(
        0.34, ge=0, le=1, description="Share of each triplet's negatives drawn at random from the corpus"
    )


class GateSettings(_Group):
    """training.gate: when a challenger replaces the champion (services/trainer/gate.py)."""

    min_triplets: int = Field(30, ge=0, description="Fewest triplets a run may be promoted from")
    min_gain: float = Field(0.0, description="Least nDCG@10 gain over the champion")
    max_p: float = Field(0.1, gt=0, le=1, description="Largest p-value of the paired test")
    guard_tolerance: float = Field(0.01, ge=0, description="Most nDCG@10 the guard set may lose")
    guard_corpus: str = Field("", description="Corpus whose eval queries form the guard set; empty = no guard")
    paired_test: Literal["randomization", "bootstrap"] = Field(
        "randomization", description="Paired test over eval queries: sign-flip randomization or bootstrap"
    )
    test_samples: int = Field(10000, ge=100, description="Resamples of the paired test")


class FusionChoiceSettings(_Group):
    """training.fusion_choice: how a run chooses its corpus's fusion (services/trainer/fusion_learner.py)."""

    enabled: bool = Field(
        True, description="A run (either recipe) also chooses how its corpus's legs are fused (method and per-leg "
        "weights, by fused nDCG@10 on the run's dev queries' feedback); the version carries it, the retriever "
        "serves it for that corpus while the version reranks there and the gate judges the version through it"
    )
    vector_shares: list[Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=lambda: [round(0.1 * i, 1) for i in range(11)], min_length=1,
        description="Vector-leg weights tried (the lexical leg gets 1 minus it; 1 = the vector leg alone)",
    )
    methods: list[Literal["rrf", "weighted", "dbsf"]] = Field(
        default_factory=lambda: ["rrf", "weighted", "dbsf"], min_length=1, description="Fusion methods tried"
    )
    min_gain: float = Field(
        0.01, ge=0, le=1, description="nDCG@10 (on the run's dev feedback) by which the grid's best fusion must beat "
        "the configured one to replace it: the best of dozens of fusions on a few hundred queries beats the "
        "configured one by some margin by chance alone"
    )


# Settings renamed when training.* was grouped by concern (old dotted name -> new). The old names (in the
# environment, the YAML file, constructor arguments and Train overrides) are accepted for one release, each
# with a FutureWarning naming the new one.
RENAMED: dict[str, str] = {
    **{f"training.{old}": f"training.adapter.{new}" for old, new in (
        ("adapter_epochs", "epochs"), ("adapter_lr", "lr"), ("adapter_weight_decay", "weight_decay"),
        ("adapter_scale", "scale"), ("adapter_eval_every", "eval_every"),
        ("adapter_query_max_length", "query_max_length"), ("blend_depths", "blend_depths"),
        ("blend_weights", "blend_weights"), ("linear_head_depth", "linear_head_depth"),
        ("linear_head_c", "linear_head_c"), ("head_cv_folds", "head_cv_folds"))},
    **{f"training.{name}": f"training.mining.{name}" for name in (
        "dwell_threshold_ms", "positive_min_rating", "negative_max_rating", "propensity_weights",
        "hard_negative_depth", "hard_negative_max_ratio", "random_negative_share")},
    **{f"training.{name}": f"training.gate.{name}" for name in (
        "min_triplets", "min_gain", "max_p", "guard_tolerance", "guard_corpus", "paired_test", "test_samples")},
    **{f"training.schedule_{name}": f"loop.{name}" for name in ("every_events", "every_minutes", "check_s", "corpora")},
}


def env_name(dotted: str) -> str:
    """training.adapter.epochs -> FEEDRANK_TRAINING__ADAPTER__EPOCHS"""
    return "FEEDRANK_" + dotted.upper().replace(".", "__")


def deprecated_name(old: str, new: str) -> None:
    warnings.warn(f"setting {old} ({env_name(old)}) is deprecated and goes in the next release: use {new} "
                  f"({env_name(new)})", FutureWarning, stacklevel=2)


def _moved(training: Any, groups: dict[str, type[BaseModel]]) -> Any:
    """Raw training.* values with each old name of RENAMED whose new group is one of `groups` (a key of
    training's values: adapter, ..., or loop, put there by the caller) moved into it; a value given under the
    new name as well wins."""
    if not isinstance(training, dict):
        return training
    training = dict(training)
    for old, new in RENAMED.items():
        group, name = new.removeprefix("training.").split(".")
        if (key := old.removeprefix("training.")) not in training or group not in groups:
            continue
        deprecated_name(old, new)
        section = training.get(group, {})
        section = section.model_dump() if isinstance(section, BaseModel) else dict(section)
        value = training.pop(key)
        # The environment source decodes JSON only for the fields it knows; an old name is not one of them.
        if isinstance(value, str) and get_origin(groups[group].model_fields[name].annotation) is list:
            value = json.loads(value)
        section.setdefault(name, value)
        training[group] = section
    return training


class TrainingSettings(_Group):
    recipe: Literal["query-adapter", "cross-encoder"] = Field(
        "query-adapter",
        description="What a run trains: query-adapter = a linear map W on the frozen dense leg's query vectors, "
        "served as a bi-encoder blended with the fused order (measured winner, bench/learning.md); "
        "cross-encoder = fine-tune a cross-encoder on the triplets",
    )
    base_model: str = Field("", description="HF directory a scratch run starts from; empty = packaged MiniLM-L6")
    loss: Literal["bce", "mnrl", "lambda"] = Field("bce", description="Cross-encoder loss")
    epochs: int = Field(1, ge=1, description="Training epochs")
    batch_size: int = Field(16, ge=1, description="Pairs (or triplets) per step")
    learning_rate: float = Field(2e-5, gt=0, description="Peak learning rate")
    warmup_ratio: float = Field(0.1, ge=0, le=1, description="Share of steps spent warming up")
    max_length: int = Field(256, ge=16, description="Token limit in training and, recorded in the manifest, serving")
    negatives_per_positive: int = Field(3, ge=1, description="Negatives paired with each positive")
    seed: int = Field(13, description="Seed of every random choice in mining and training")
    max_steps: int = Field(0, ge=0, description="Stop a run after this many optimizer steps; 0 = all epochs")
    dev_share: float = Field(
        0.2, ge=0, lt=1,
        description="Share of a run's queries held out (seeded): the per-epoch evaluation (both recipes), early "
        "stopping and the head choice (query-adapter; membership hashes the query text)",
    )
    torch_threads: int = Field(0, ge=0, description="torch intra-op threads while training; 0 = torch's default")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where training runs: auto = CUDA when torch sees a GPU, else CPU"
    )
    propensity_clip: float = Field(
        10.0, ge=1, description="Largest inverse-propensity weight (mining and the click judge's clipped IPS)"
    )
    train_split: str = Field(
        "train",
        description="Qrels split mined by default (qrels source and bootstrap), minus the eval holdout. "
        "'train@0.25' = a seeded 25% of those queries (the demo leaves the rest to its simulated users)",
    )
    # evaluation
    eval_split: str = Field(
        "test",
        description="Qrels split declared the frozen evaluation set; never mined. 'train@0.2' = a seeded 20% "
        "holdout of that split's queries (the rest of the split stays minable)",
    )
    eval_golden: str = Field(
        "", description="Golden file (q, corpus_id/repo, expect_paths) used as the frozen evaluation set instead"
    )
    eval_max_queries: int = Field(0, ge=0, description="Evaluate on a seeded sample of this many queries; 0 = all")
    eval_depth: int = Field(100, ge=10, le=1000, description="Fused candidates fetched per eval query")
    eval_rerank_depth: int = Field(
        100, ge=1,
        description="Top fused candidates each model reranks in evaluation; keep it equal to "
        "reranking.tribrid_reranker_topn so evaluation reranks what the retriever sends",
    )
    candidates_file: str = Field(
        "", description="JSON file of fixed candidate lists used instead of the live retriever (offline, tests)"
    )
    retriever_timeout_s: float = Field(30.0, gt=0, description="Deadline of one Search call to the retriever")
    # the click judge (services/trainer/click_judge.py)
    judge: Literal["labels", "clicks", "auto"] = Field(
        "auto", description="Who decides at the gate: labels = the frozen evaluation set (qrels split or golden "
        "file); clicks = held-out sessions' logged clicks, IPS-corrected by the measured propensities; auto = labels "
        "when the corpus declares a qrels split or golden file, else clicks"
    )
    judge_holdout_share: float = Field(
        0.2, gt=0, lt=1, description="Share of sessions (by a hash of the session id) never mined; a query first "
        "searched in one of them is never mined from any session and the click judge judges all its sessions"
    )
    judge_min_sessions: int = Field(
        50, ge=1, description="Click judge: fewest held-out sessions with a click it decides on (else promote fails)"
    )
    judge_max_sessions: int = Field(
        5000, ge=0, description="Click judge: the newest this many held-out sessions are judged on; 0 = all"
    )
    propensity_max_rank: int = Field(
        20, ge=2, le=100, description="Propensities are estimated for ranks 1..this (deeper clicks are ignored)"
    )
    propensity_bootstrap: int = Field(
        50, ge=10, description="Bootstrap resamples of sessions behind the propensities' 95% confidence intervals"
    )
    # bootstrap
    bootstrap_sources: list[str] = Field(
        default_factory=lambda: ["qrels", "wikiqa", "trecqa", "staqc"],
        description="Bootstrap data: 'qrels' (the corpus's train split) and answer-selection sets by folder name",
    )
    answer_sets_dir: str = Field(
        "", description="Folder holding the answer-selection sets (<name>/rerank_train.jsonl); empty = skip them"
    )
    bootstrap_max_per_source: int = Field(
        500, ge=1,
        description="Bootstrap (cross-encoder recipe): most triplets taken from each source (CPU training time)",
    )
    consume_events: bool = Field(True, description="Run the Kafka consumer into the event store in the trainer")
    adapter: AdapterSettings = AdapterSettings()
    mining: MiningSettings = MiningSettings()
    gate: GateSettings = GateSettings()
    fusion_choice: FusionChoiceSettings = FusionChoiceSettings()

    @model_validator(mode="before")
    @classmethod
    def _flat_names(cls, data: Any) -> Any:
        """The flat names of the previous release (training.adapter_epochs, ...), moved into their groups."""
        return _moved(data, {"adapter": AdapterSettings, "mining": MiningSettings, "gate": GateSettings})


class InterventionSettings(_Group):
    """Randomised interventions on a share of user searches: the measurement behind the propensities.

    Only results the ranking retrieved are reordered (never one it did not return); searches that ask for no
    intervention (evaluation traffic, the trainer's candidate lists) and opted-out corpora are left alone."""

    share: float = Field(
        0.0, ge=0, le=1, description="Share of logged user searches intervened on (0 = off; a few percent in production)"
    )
    kind: Literal["rand_pair", "top_n_shuffle"] = Field(
        "rand_pair", description="rand_pair = swap rank 1 with a uniformly drawn rank k in 2..top_n (Joachims et al. "
        "2017); top_n_shuffle = a uniformly random order of the top_n results"
    )
    top_n: int = Field(20, ge=2, le=100, description="Deepest rank an intervention moves a result to or from")
    opt_out_corpora: list[str] = Field(
        default_factory=list, description="Corpora never intervened on (their propensities come from other traffic)"
    )


class GatewaySettings(_Group):
    """The HTTP gateway and the MCP server: deadlines of their gRPC calls and the telemetry rate limit.

    Admin routes use endpoints.admin_token (the same token the gRPC services check)."""

    max_body_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, description="Largest HTTP request body; a larger one gets 413 before it is read"
    )
    rpc_timeout_s: float = Field(10.0, gt=0, description="Deadline of a quick gRPC call (info, config, record, rerank)")
    search_timeout_s: float = Field(30.0, gt=0, description="Deadline of a Retriever.Search call")
    admin_timeout_s: float = Field(
        600.0, gt=0, description="Deadline of a trainer call that works before it answers (mine, evaluate, promote)"
    )
    stream_timeout_s: float = Field(
        3600.0, gt=0, description="Longest a run-metrics SSE stream stays open (Trainer.StreamRunMetrics deadline)"
    )
    telemetry_rate_per_s: float = Field(
        20.0, gt=0, description="Telemetry events per second one client (IP address) may post, on average"
    )
    telemetry_burst: int = Field(60, ge=1, description="Telemetry events one client may post at once before limiting")
    rate_limit_clients: int = Field(
        10000, ge=1, description="Clients whose rate-limit buckets are kept (least recently seen are forgotten)"
    )
    log_lines: int = Field(100, ge=1, le=10000, description="Lines of job output GET /api/reranker/logs returns")


class PopulationSettings(_Group):
    """Who the simulated users are (services/demo/simulate.py). homogeneous: everyone behaves as the demo's
    one click model. heterogeneous: users and queries differ, as on real traffic; the distributions below
    were chosen from the literature before any benchmark ran (docs/online.md), not fitted to a result."""

    kind: Literal["homogeneous", "heterogeneous"] = Field(
        "homogeneous", description="homogeneous = every user clicks by the demo's click model (the demo's "
        "behaviour); heterogeneous = each user has their own click propensity and patience, each query its "
        "intent (bench/interleaving.py measures both)")
    navigational_share: float = Field(
        0.2, ge=0, le=1, description="Share of queries with navigational intent (one answer wanted: few "
        "clicks beside it, stops soon); the rest are informational (browse, click more, stop later). About a "
        "fifth of web queries are navigational (Broder, 2002, 'A taxonomy of web search')")
    propensity_shape: float = Field(
        1.0, gt=0, le=100, description="Shape of the Gamma distribution (mean 1) of a user's click propensity, a "
        "factor on every click probability: 1 = exponential, the maximum-entropy choice for a positive "
        "factor of known mean; a tenth of users then click under a tenth as often as the typical one, a "
        "tenth over 2.3x")
    decay_min: float = Field(0.5, gt=0, le=10, description="Least examination decay (patience) a user has: examines "
                             "rank r with probability (1/r)^decay, decay drawn log-uniform in [decay_min, "
                             "decay_max]. 0.5 to 2 is the range of position-bias severities simulated by "
                             "Joachims, Swaminathan and Schnabel (WSDM 2017), median 1 = the demo's")
    decay_max: float = Field(2.0, gt=0, le=10, description="Greatest examination decay a user has (see decay_min)")
    queries_per_user: float = Field(
        5.0, ge=1, le=1000, description="Mean searches one user makes (geometric: after each, another with a fixed "
        "chance): the AOL 2006 log's ~20M queries from ~650k users over three months is about 5 per user per "
        "two weeks, the length of an A/B test")
    seed: int = Field(7, description="Seeds which queries are navigational")

    @model_validator(mode="after")
    def _decay_range(self) -> PopulationSettings:
        if self.decay_max < self.decay_min:
            raise ValueError(f"decay_max ({self.decay_max}) must be >= decay_min ({self.decay_min})")
        return self


class DemoSettings(_Group):
    """`make demo`: the learning loop on a BEIR dataset with simulated users."""

    sessions: int = Field(4000, ge=1, description="Simulated search sessions in the full run")
    quick_sessions: int = Field(1000, ge=1, description="Simulated search sessions with QUICK=1")
    quick_click_sessions: int = Field(
        6000, ge=1, description="Simulated search sessions with QUICK=1 JUDGE=clicks: the click judge decides on a "
        "fifth of the sessions' clicks, so it needs more than the labelled gate (1000 left it at p = 0.50; 4000 at "
        "p = 0.14 once held-out queries were never mined)"
    )
    quick_max_docs: int = Field(
        2000, ge=100, description="QUICK=1 ingests every judged document plus a seeded sample up to this many"
    )
    noise: float = Field(0.0, ge=0, le=0.9, description="Share of random clicks and wrong thumbs (0.3 = noisy run)")
    rerank_topn: int = Field(100, ge=1, description="Fused candidates the reranker sees in the demo")
    train_split: str = Field(
        "auto", description="Qrels split the bootstrap learns from and simulated users ask (minus the held-out eval "
        "queries); auto = train, else dev"
    )
    eval_share: float = Field(
        0.2, gt=0, lt=1, description="The trainer's frozen evaluation set: this seeded share of the users' split"
    )
    labelled_share: float = Field(
        0.25, gt=0, le=1,
        description="Share of the users' split (minus the eval holdout) whose labels the bootstrap v0 learns from; "
        "simulated users ask the other queries, so their clicks teach what labels did not (1 = users ask the "
        "labelled queries again)",
    )
    test_split: str = Field("test", description="Qrels split reported; no training or selection step sees it")
    bootstrap: bool = Field(True, description="Make (or reuse) a bootstrap v0 and put it through the gate")
    judge: Literal["labels", "clicks"] = Field(
        "labels", description="Who judges the loop: labels = the gate on held-out labelled train queries (v0 from "
        "labels); clicks = the trainer gets no qrels at all (a copy of the corpus without them): v0 is the fused "
        "order, the users' clicks train the challenger and the click judge decides"
    )
    intervention_share: float = Field(
        0.3, ge=0, le=1, description="Share of simulated users' searches whose top 20 are shuffled "
        "(interventions.share): what the propensities are measured from"
    )
    online_queries: int = Field(3000, ge=0, description="Query budget of the online experiment that decides the "
                                "learned version against the champion on the simulated users' searches "
                                "(interleaving every one of them); 0 skips the online step")
    quick_online_queries: int = Field(400, ge=0, description="online_queries with QUICK=1")
    population: PopulationSettings = PopulationSettings()


class ProgressSettings(_Group):
    """How long commands report progress when stdout is not a terminal (services/common/progress.py)."""

    interval_s: float = Field(10.0, gt=0, le=3600, description="The longest a plain log stays silent while a task "
                              "or status is open (a heartbeat line with its state)")
    share: float = Field(0.05, gt=0, le=1, description="A plain line each time a task with a total passes "
                         "another this share of it")


class InterleavingSettings(_Group):
    """Online experiments: team-draft interleaving of a corpus's champion and a challenger on live Search."""

    share: float = Field(0.5, ge=0, le=1, description="Default share of a corpus's Search traffic interleaved "
                         "while its experiment runs (an experiment may set its own)")
    query_budget: int = Field(20000, ge=1, description="Default interleaved queries after which an experiment "
                              "that has not decided ends undecided")
    alpha: float = Field(0.05, gt=0, lt=1, description="Type-I error of the sequential test: the chance of "
                         "declaring a win or a loss between two equally good rankers, at any number of looks")
    prior_strength: float = Field(50.0, gt=0, description="a of the sequential test's Beta(a, a) mixture over the "
                                  "challenger's win share: larger = more sensitive to small differences, slower on "
                                  "large ones (services/trainer/online/sequential.py)")
    challenger_timeout_s: float = Field(0.5, gt=0, description="How much longer than the champion an interleaved "
                                        "search waits for the challenger's ranking before it is served the "
                                        "champion's alone (counted as a fallback)")
    max_consecutive_failures: int = Field(20, ge=1, description="Consecutive interleaved searches whose challenger "
                                          "failed (late, broken, or no longer the corpus's challenger) after which "
                                          "the retriever stops the experiment, with the reason")
    watch_ttl_s: float = Field(5.0, gt=0, description="How long the retriever trusts what the trainer said about a "
                               "corpus's running experiment before asking again (Trainer.GetExperiment, off the "
                               "search path)")
    click_window_s: float = Field(60.0, gt=0, description="Clicks on an interleaved list are credited this long "
                                  "after its impression; later ones are counted, not credited")
    decisions_topic: str = Field("feedrank.experiments.v1", description="Kafka topic each experiment's start and "
                                 "end is published on (a serialized feedrank.v1.Experiment, keyed by corpus id)")


class LoopSettings(_Group):
    """The learning loop's unattended decisions."""

    auto_promote_online: bool = Field(False, description="Promote a challenger that wins its online experiment "
                                      "(off: the win is reported and recorded, an operator promotes)")
    every_events: int = Field(0, ge=0, description="Run after this many new events; 0 = off")
    every_minutes: float = Field(0.0, ge=0, description="Run at least this often; 0 = off")
    check_s: float = Field(30.0, gt=0, description="How often the trigger conditions are checked")
    corpora: list[str] = Field(
        default_factory=list, description="Corpora it trains; empty = every corpus with events"
    )


class RegistrySettings(_Group):
    root: str = Field("", description="Registry folder; empty = $FEEDRANK_DATA_DIR/registry")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FEEDRANK_", env_nested_delimiter="__", frozen=True, extra="forbid"
    )

    data_dir: str = Field("./data", description="Everything a deployment writes lives under this folder")
    log_level: str = Field("INFO", description="Log level")
    log_json: bool = Field(True, description="Structured JSON logs (false: plain text)")
    endpoints: EndpointSettings = EndpointSettings()
    reranking: RerankingSettings = RerankingSettings()
    engine: EngineSettings = EngineSettings()
    fusion: FusionSettings = FusionSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    kafka: KafkaSettings = KafkaSettings()
    feedback: FeedbackSettings = FeedbackSettings()
    training: TrainingSettings = TrainingSettings()
    interventions: InterventionSettings = InterventionSettings()
    registry: RegistrySettings = RegistrySettings()
    interleaving: InterleavingSettings = InterleavingSettings()
    loop: LoopSettings = LoopSettings()
    demo: DemoSettings = DemoSettings()
    progress: ProgressSettings = ProgressSettings()
    gateway: GatewaySettings = GatewaySettings()

    @model_validator(mode="before")
    @classmethod
    def _flat_loop_names(cls, data: Any) -> Any:
        """training.schedule_* of the previous release, moved to loop.*."""
        if not isinstance(data, dict) or not isinstance(data.get("training"), dict):
            return data
        moved = _moved({**data["training"], "loop": data.get("loop", {})}, {"loop": LoopSettings})
        return {**data, "loop": moved.pop("loop"), "training": moved}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        secrets_dir = os.environ.get(SECRETS_DIR_ENV)
        if secrets_dir:
            sources.append(NestedSecretsSettingsSource(file_secret_settings, secrets_dir=secrets_dir,
                                                       secrets_dir_missing="error"))
        yaml_path = os.environ.get("FEEDRANK_CONFIG")
        if yaml_path:
            if not Path(yaml_path).is_file():
                raise FileNotFoundError(f"FEEDRANK_CONFIG points to {yaml_path}, which is not a file")
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=yaml_path))
        return tuple(sources)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).resolve()

    @property
    def registry_path(self) -> Path:
        return Path(self.registry.root).resolve() if self.registry.root else self.data_path / "registry"

    @property
    def trainer_log_path(self) -> Path:
        """The trainer's mine/train/evaluate/gate output (the gateway's logs route reads it)."""
        return self.data_path / "trainer" / "jobs.log"

    @property
    def spool_path(self) -> Path:
        return Path(self.feedback.spool_dir).resolve() if self.feedback.spool_dir else self.data_path / "spool"

    def replace(self, **changes: Any) -> Settings:
        """A copy with whole groups replaced (settings are frozen)."""
        return self.model_copy(update=changes)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def describe(model: type[BaseModel] = Settings, prefix: str = "FEEDRANK_") -> list[tuple[str, str, str]]:
    """(env var, default, description) for every leaf setting, for `feedrank config`."""
    rows: list[tuple[str, str, str]] = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        env = f"{prefix}{name.upper()}"
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows += describe(annotation, env + "__")
        else:
            rows.append((env, repr(field.default), field.description or ""))
    return rows
