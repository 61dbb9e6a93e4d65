"""Request and response bodies of the HTTP routes (the OpenAPI schema is generated from these).

Ranges here are only what the wire can carry (int32 fields, valid UTF-8): what a value may be is
decided by the service behind the route, whose INVALID_ARGUMENT names the field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from services.events.kinds import TEACHING_KINDS
from services.reranker import MIN_TOKENS_PER_DOC

INT32 = 2**31 - 1
INT64 = 2**63 - 1


def _utf8(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:  # lone surrogates in a JSON string cannot go into a protobuf string
        raise ValueError("is not valid UTF-8 text") from err
    return value


Text = Annotated[str, AfterValidator(_utf8)]
Int32 = Annotated[int, Field(ge=-INT32 - 1, le=INT32)]
Count = Annotated[int, Field(ge=0, le=INT32)]
Finite = Annotated[float, Field(allow_inf_nan=False)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- search and feedback -------------------------------------------------------------------------

class FusionOverride(_Body):
    method: Literal["rrf", "weighted", "dbsf"] | None = None
    rrf_k: Finite | None = None
    vector_weight: Finite | None = None
    sparse_weight: Finite | None = None
    normalization: Literal["minmax", "zscore"] | None = None


class SearchBody(_Body):
    corpus_id: Text = Field(description="Corpus to search (GET /corpora lists them)")
    query: Text
    top_k: Count = Field(0, description="Results to return; 0 = the configured default")
    candidate_k: Count = Field(0, description="Depth of each leg before fusion; 0 = the configured default")
    fusion: FusionOverride | None = Field(None, description="Override of the fusion settings for this search")
    rerank_mode: Text | None = Field(None, description="Override: none | local | learning | cloud")
    session_id: Text = Field(
        "anonymous", description="Pseudonymous session id, copied into the impression event (feedback requires one)"
    )
    model: Text = Field("", description="Reranker alias or version id")


class Legs(BaseModel):
    lexical_score: float
    lexical_rank: int
    vector_score: float
    vector_rank: int
    fused_score: float
    fused_rank: int


class SearchHit(BaseModel):
    doc_id: str
    title: str
    snippet: str
    rank: int
    rerank_score: float
    legs: Legs
    team: str = Field("", description='Interleaved searches: "champion" or "challenger", the ranker that '
                      "contributed the result")


class SearchReply(BaseModel):
    query_id: str
    results: list[SearchHit]
    model_version: str
    query_adapter_version: str = Field(description="Version whose query adapter embedded the vector leg; empty = base")
    reranked: bool
    degraded_reason: str
    experiment_id: str = Field("", description="Set when the results interleave an online experiment; echo it "
                               "on feedback")
    timings: dict[str, float]


class TelemetryEvent(_Body):
    """The seed's feedback event, plus the query_id and rank that tie it to what was shown."""

    model_config = ConfigDict(extra="ignore")  # the seed's clients send extra keys (ui hints, versions)

    event_id: Text = Field(description="Client-made idempotency key")
    query_id: Text = Field(description="query_id of the search response the result came from")
    doc_id: Text
    query: Text = Field("", description="Accepted for the seed's clients; the query_id already names the query")
    type: Literal[TEACHING_KINDS] | None = Field(None, description="Default: rating when rating is set, else click")
    rating: Int32 | None = Field(None, description="1-5; thumbs up = 5, thumbs down = 1")
    rank: Int32 = Field(0, description="1-based position the result was shown at (required for clicks)")
    dwell_ms: Annotated[int, Field(ge=-INT64 - 1, le=INT64)] = Field(0, description="Time spent on the clicked result")
    source: Text = Field("web", description="Free-form origin")
    session_id: Text = Field("anonymous", description="Pseudonymous session id (the seed's events had none)")
    experiment_id: Text = Field("", description="The search response's experiment_id, echoed (interleaved lists)")
    timestamp: float | Text | None = Field(
        None, description="ISO-8601 time, or unix epoch seconds or milliseconds; default: now"
    )


class ExperimentStartBody(_Body):
    challenger_version: Text = Field("", description="Version to interleave; empty = the corpus's challenger alias")
    share: Finite | None = Field(None, description="Share of the corpus's searches interleaved, in [0, 1]; "
                                 "default interleaving.share")
    query_budget: Count = Field(0, description="Interleaved queries before it ends undecided; 0 = "
                                "interleaving.query_budget")


class ExperimentStopBody(_Body):
    reason: Text = Field("", description="Kept with the experiment; default 'stopped by an operator'")


class Accepted(BaseModel):
    accepted: int
    spooled: int


# --- reranker and trainer ------------------------------------------------------------------------

class MineBody(_Body):
    corpus_id: Text
    sources: list[Text] = Field(default_factory=list, description='"events", "golden", "qrels"; empty = default')
    golden_path: Text = ""
    qrels_split: Text = ""


class TrainBody(_Body):
    corpus_id: Text
    start_from: Text = Field("champion", description='"champion" or "base"')
    triplet_files: list[Text] = Field(default_factory=list, description="Empty = the newest mined file of each source")
    overrides: dict[Text, Text] = Field(default_factory=dict, description='training.* settings, e.g. {"epochs": "2"}')


class EvaluateBody(_Body):
    corpus_id: Text
    challenger: Text = ""
    champion: Text = ""


class PromoteBody(_Body):
    corpus_id: Text
    version_id: Text = Field("", description="Empty = the challenger")
    force: bool = Field(False, description="Skip the gate")


class RollbackBody(_Body):
    corpus_id: Text


# --- run-time config ------------------------------------------------------------------------------

class RerankingPatch(_Body):
    reranker_mode: Literal["none", "local", "learning", "cloud"] | None = None
    reranker_local_model: Text | None = None
    reranker_cloud_provider: Text | None = None
    reranker_cloud_model: Text | None = None
    tribrid_reranker_topn: Int32 | None = None
    rerank_input_snippet_chars: Int32 | None = None
    reranker_timeout: Finite | None = None


class FusionPatch(FusionOverride):
    pass


# --- drop-in rerank APIs --------------------------------------------------------------------------

class CohereRerankBody(BaseModel):
    """Cohere's v2 rerank request. Fields Cohere added later are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")

    model: Text = Field(description="Any name: reranking.model_map says which alias or version serves it")
    query: Text
    documents: list[Text]
    top_n: Count | None = None
    max_tokens_per_doc: Annotated[int, Field(ge=MIN_TOKENS_PER_DOC, le=INT32)] | None = Field(
        None, description="Each document is cut to its first N tokens before scoring (at least 16)")
    priority: Int32 | None = None


class CohereResult(BaseModel):
    index: int
    relevance_score: float


class CohereReply(BaseModel):
    id: str
    results: list[CohereResult]
    meta: dict


class TeiRerankBody(BaseModel):
    """Hugging Face text-embeddings-inference's /rerank request."""

    model_config = ConfigDict(extra="ignore")

    query: Text
    texts: list[Text]
    raw_scores: bool = Field(False, description="Scores before the version's sigmoid (logits)")
    return_text: bool = False
    truncate: bool | None = Field(None, description="Cut long pairs to the model's length; default true")
    truncation_direction: Literal["right", "left", "Right", "Left"] = "right"


class TeiRank(BaseModel):
    index: int
    score: float
    text: str | None = None


class V1RerankBody(BaseModel):
    """The `/v1/rerank` request of Jina (`documents`, `top_n`, `return_documents`), Voyage (`documents`, `top_k`,
    `return_documents`, `truncation`) and Mixedbread (`input`, `top_k`, `return_input`, `rank_fields`)."""

    model_config = ConfigDict(extra="ignore")

    model: Text = Field("", description="Any name: reranking.model_map says which alias or version serves it")
    query: Text
    documents: list[Text | dict[str, Any]] | None = Field(
        None, description='Jina, Voyage: strings, or Jina\'s {"text": ...} objects')
    input: list[Text | dict[str, Any]] | None = Field(None, description="Mixedbread: strings or objects")
    top_n: Count | None = Field(None, description="Jina: results to return; empty = all")
    top_k: Annotated[int, Field(ge=-1, le=INT32)] | None = Field(
        None, description="Voyage, Mixedbread: results to return; empty (or Mixedbread's -1) = all")
    return_documents: bool | None = Field(None, description="Jina (default true), Voyage (default false)")
    return_input: bool = Field(False, description="Mixedbread: echo each result's input")
    rank_fields: list[Text] | None = Field(None, description="Mixedbread: the object keys whose values are ranked")
    truncation: bool | None = Field(None, description="Voyage: false refuses documents over the model's length")
