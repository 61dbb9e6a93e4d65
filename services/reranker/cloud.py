"""Hosted rerank APIs (Cohere v2, Voyage, Jina) behind one small interface.

Each provider class only knows its wire format: how to build the request body and how to read
scores and billed units out of the response. Everything else (the HTTP client, the deadline,
mapping failures to `FeedrankError`, counting billed units and cost) lives in `CloudReranker`.

API keys come from the environment or the secrets folder (COHERE_API_KEY, VOYAGE_API_KEY, JINA_API_KEY:
`services.common.credentials.provider_key`) and live only
in the HTTP client's default headers: they are never logged, never put in an error message, and
scrubbed from any provider message we pass on.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
from prometheus_client import Counter

from services.common.config import RerankingSettings
from services.common.credentials import provider_key
from services.common.errors import ErrorKind, FeedrankError, invalid
from services.reranker.catalog import Catalog, CatalogModel

log = logging.getLogger(__name__)

BILLED_UNITS = Counter(
    "feedrank_cloud_billed_units_total",
    "Units a cloud rerank provider billed (Cohere: searches; Voyage, Jina: tokens)",
    ["provider", "model"],
)
COST_USD = Counter(
    "feedrank_cloud_cost_usd_total",
    "Estimated USD spent on cloud reranking, from the catalog price (models without a price add nothing)",
    ["provider", "model"],
)
CALLS = Counter(
    "feedrank_cloud_requests_total",
    "Cloud rerank calls by outcome (ok, or the error kind they failed with)",
    ["provider", "model", "outcome"],
)

_MESSAGE_CHARS = 300  # enough of a provider's error message to act on, not a whole HTML page


@dataclass(frozen=True)
class CloudScores:
    scores: list[float]  # one per input text, in input order; texts the provider did not return get -inf
    billed_units: int  # search units (Cohere), tokens (Voyage/Jina) as the provider reports them
    model: str
    provider: str


class CloudReranker(abc.ABC):
    """One hosted rerank model. Subclasses supply the wire format of their provider."""

    PROVIDER: ClassVar[str]
    ENV_VAR: ClassVar[str]
    DEFAULT_BASE_URL: ClassVar[str]
    PATH: ClassVar[str]

    def __init__(self, model: CatalogModel, api_key: str, base_url: str, timeout: float, max_documents: int):
        self.model = model
        self.base_url = base_url
        self._timeout = timeout
        self._max_documents = max_documents
        self._key = api_key
        self._client = httpx.AsyncClient(
            base_url=base_url,
            timeout=timeout,
            headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
            follow_redirects=False,  # a moved API is a configuration problem: report it, do not chase it
        )
        self._lock = threading.Lock()  # GetInfo may read usage from another thread
        self._billed = 0
        self._cost = 0.0

    @property
    def provider(self) -> str:
        return self.PROVIDER

    async def rerank(self, query: str, texts: Sequence[str], top_n: int) -> CloudScores:
        """Scores for `texts` in input order. Only the first `reranker_cloud_top_n` texts are sent;
        `top_n` (0 = all sent) is how many results the provider is asked to return."""
        sent = list(texts[: self._max_documents])
        scores = [-math.inf] * len(texts)
        if not sent:
            return CloudScores(scores, 0, self.model.id, self.PROVIDER)
        want = len(sent) if top_n <= 0 else min(top_n, len(sent))
        billed = 0  # a response with usage but bad results was still billed: count it either way
        try:
            payload = await self._post(self._body(query, sent, want))
            results, billed = self._parse(payload)
            for index, score in _checked(results, len(sent), self.PROVIDER):
                scores[index] = score
        except FeedrankError as err:
            self._count(err.kind.value, billed)
            log.warning(
                "cloud rerank failed",
                extra={"fields": {"provider": self.PROVIDER, "model": self.model.id, "error": err.message}},
            )
            raise
        self._count("ok", billed)
        log.debug(
            "cloud rerank",
            extra={"fields": {"provider": self.PROVIDER, "model": self.model.id, "sent": len(sent),
                              "billed": billed}},
        )
        return CloudScores(scores, billed, self.model.id, self.PROVIDER)

    async def aclose(self) -> None:
        await self._client.aclose()

    def usage(self) -> list[dict[str, Any]]:
        """Billed units and estimated cost since this reranker was built, one entry per provider
        model, with exactly the fields of `feedrank.v1.CloudUsage` (GetInfo). The cost stays 0.0
        for a model whose price the catalog does not know (see its note)."""
        with self._lock:
            return [{
                "provider": self.PROVIDER,
                "model": self.model.id,
                "billed_units": self._billed,
                "estimated_cost_usd": self._cost,
            }]

    @abc.abstractmethod
    def _body(self, query: str, documents: list[str], top_n: int) -> dict[str, Any]:
        """The JSON request body."""

    @abc.abstractmethod
    def _parse(self, payload: Any) -> tuple[list[Any], int]:
        """(the raw result entries, the billed units) out of a 2xx response body."""

    async def _post(self, body: dict[str, Any]) -> Any:
        try:
            # httpx's timeout is per phase (connect, each read); this bounds the whole call.
            async with asyncio.timeout(self._timeout):
                response = await self._client.post(self.PATH, json=body)
        except (TimeoutError, httpx.TimeoutException):
            raise FeedrankError(
                ErrorKind.DEADLINE_EXCEEDED,
                f"{self.PROVIDER} rerank did not answer within reranker_timeout ({self._timeout:g}s)",
            ) from None
        except httpx.HTTPError as err:
            raise FeedrankError(
                ErrorKind.UNAVAILABLE,
                self._scrub(
                    f"cannot reach {self.PROVIDER} rerank API at {self.base_url}: {type(err).__name__} {err}"
                ),
            ) from None
        if response.status_code != 200:
            raise self._status_error(response)
        try:
            return response.json()
        except ValueError:
            raise _malformed(self.PROVIDER, "the body is not JSON") from None

    def _status_error(self, response: httpx.Response) -> FeedrankError:
        code = response.status_code
        detail = self._scrub(_provider_message(response))
        if code in (401, 403):
            return FeedrankError(
                ErrorKind.FAILED_PRECONDITION,
                f"cloud provider rejected the API key ({self.PROVIDER}, HTTP {code}; check {self.ENV_VAR})",
            )
        if code == 429:
            return FeedrankError(
                ErrorKind.RESOURCE_EXHAUSTED, f"{self.PROVIDER} rate limit (HTTP 429): {detail}"
            )
        if 400 <= code < 500:
            return FeedrankError(
                ErrorKind.INVALID_ARGUMENT, f"{self.PROVIDER} refused the request (HTTP {code}): {detail}"
            )
        return FeedrankError(ErrorKind.UNAVAILABLE, f"{self.PROVIDER} failed (HTTP {code}): {detail}")

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "[api key]") if self._key else text

    def _count(self, outcome: str, billed: int) -> None:
        cost = self.model.cost(billed)
        CALLS.labels(self.PROVIDER, self.model.id, outcome).inc()
        if billed:
            BILLED_UNITS.labels(self.PROVIDER, self.model.id).inc(billed)
        if cost:
            COST_USD.labels(self.PROVIDER, self.model.id).inc(cost)
        with self._lock:
            self._billed += billed
            self._cost += cost or 0.0


class CohereReranker(CloudReranker):
    """Cohere `POST /v2/rerank`: billed in search units (meta.billed_units.search_units)."""

    PROVIDER = "cohere"
    ENV_VAR = "COHERE_API_KEY"
    DEFAULT_BASE_URL = "https://api.cohere.com"
    PATH = "/v2/rerank"

    def _body(self, query: str, documents: list[str], top_n: int) -> dict[str, Any]:
        return {"model": self.model.id, "query": query, "documents": documents, "top_n": top_n}

    def _parse(self, payload: Any) -> tuple[list[Any], int]:
        results = _field(payload, "results", list, self.PROVIDER)
        meta = _field(payload, "meta", dict, self.PROVIDER, optional=True) or {}
        billed = _field(meta, "billed_units", dict, self.PROVIDER, optional=True, where="meta") or {}
        return results, _units(billed.get("search_units"), self.PROVIDER, "meta.billed_units.search_units")


class VoyageReranker(CloudReranker):
    """Voyage `POST /v1/rerank`: results under `data`, billed in tokens (usage.total_tokens)."""

    PROVIDER = "voyage"
    ENV_VAR = "VOYAGE_API_KEY"
    DEFAULT_BASE_URL = "https://api.voyageai.com"
    PATH = "/v1/rerank"

    def _body(self, query: str, documents: list[str], top_n: int) -> dict[str, Any]:
        return {"query": query, "documents": documents, "model": self.model.id, "top_k": top_n}

    def _parse(self, payload: Any) -> tuple[list[Any], int]:
        results = _field(payload, "data", list, self.PROVIDER)
        usage = _field(payload, "usage", dict, self.PROVIDER, optional=True) or {}
        return results, _units(usage.get("total_tokens"), self.PROVIDER, "usage.total_tokens")


class JinaReranker(CloudReranker):
    """Jina `POST /v1/rerank`: billed in tokens (usage.total_tokens)."""

    PROVIDER = "jina"
    ENV_VAR = "JINA_API_KEY"
    DEFAULT_BASE_URL = "https://api.jina.ai"
    PATH = "/v1/rerank"

    def _body(self, query: str, documents: list[str], top_n: int) -> dict[str, Any]:
        # Jina echoes every document back unless told not to; we only need index and score.
        return {"model": self.model.id, "query": query, "documents": documents, "top_n": top_n,
                "return_documents": False}

    def _parse(self, payload: Any) -> tuple[list[Any], int]:
        results = _field(payload, "results", list, self.PROVIDER)
        usage = _field(payload, "usage", dict, self.PROVIDER, optional=True) or {}
        return results, _units(usage.get("total_tokens"), self.PROVIDER, "usage.total_tokens")


PROVIDERS: dict[str, type[CloudReranker]] = {
    cls.PROVIDER: cls for cls in (CohereReranker, VoyageReranker, JinaReranker)
}


def make_cloud_reranker(settings: RerankingSettings, catalog: Catalog) -> CloudReranker:
    """The reranker for `reranking.reranker_cloud_provider` / `reranker_cloud_model`."""
    provider = settings.reranker_cloud_provider
    cls = PROVIDERS.get(provider)
    if cls is None:
        raise invalid("reranker_cloud_provider", f"must be one of {sorted(PROVIDERS)}, got {provider!r}")
    model = catalog.get(provider, settings.reranker_cloud_model)
    if model.kind != "rerank" or model.local:
        raise invalid("reranker_cloud_model", f"{model.id!r} is not a hosted rerank model")
    key = provider_key(cls.ENV_VAR)
    if not key:
        raise FeedrankError(
            ErrorKind.FAILED_PRECONDITION,
            f"reranker_mode=cloud with provider {provider} needs {cls.ENV_VAR} (environment variable, or a file "
            "of that name in FEEDRANK_SECRETS_DIR)",
        )
    base_url = settings.reranker_cloud_base_url or cls.DEFAULT_BASE_URL
    try:
        parsed = httpx.URL(base_url)
    except httpx.InvalidURL as err:
        raise invalid("reranker_cloud_base_url", f"not a URL: {err}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise invalid("reranker_cloud_base_url", f"must be an http(s) URL with a host, got {base_url!r}")
    return cls(
        model, key, base_url, timeout=settings.reranker_timeout, max_documents=settings.reranker_cloud_top_n
    )


def _checked(results: list[Any], sent: int, provider: str) -> list[tuple[int, float]]:
    pairs: list[tuple[int, float]] = []
    seen: set[int] = set()
    for i, entry in enumerate(results):
        if not isinstance(entry, dict):
            raise _malformed(provider, f"result {i} is not an object")
        index, score = entry.get("index"), entry.get("relevance_score")
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < sent:
            raise _malformed(provider, f"result {i} has index {index!r}, outside the {sent} documents sent")
        if index in seen:
            raise _malformed(provider, f"document {index} is scored twice")
        if not isinstance(score, (int, float)) or isinstance(score, bool) or not math.isfinite(score):
            raise _malformed(provider, f"result {i} has relevance_score {score!r}, not a finite number")
        seen.add(index)
        pairs.append((index, float(score)))
    return pairs


def _field(
    payload: Any, key: str, kind: type, provider: str, optional: bool = False, where: str = ""
) -> Any:
    if not isinstance(payload, dict):
        raise _malformed(provider, f"{where or 'the body'} is not a JSON object")
    value = payload.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, kind):
        name = f"{where}.{key}" if where else key
        raise _malformed(provider, f"'{name}' is missing or not {'a list' if kind is list else 'an object'}")
    return value


def _units(value: Any, provider: str, name: str) -> int:
    # A response without usage still carries good scores; count it as 0 rather than fail the query.
    if value is None:
        return 0
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value < 0:
        raise _malformed(provider, f"'{name}' is {value!r}, not a count")
    return math.ceil(value)


def _malformed(provider: str, what: str) -> FeedrankError:
    return FeedrankError(ErrorKind.UNAVAILABLE, f"{provider} sent a malformed rerank response: {what}")


def _provider_message(response: httpx.Response) -> str:
    """The provider's own error text: Cohere sends {"message"}, Voyage and Jina {"detail"}."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("message", "detail", "error"):
            value = body.get(key)
            if isinstance(value, dict):
                value = value.get("message")
            if isinstance(value, str) and value:
                return value[:_MESSAGE_CHARS]
            if value is not None:
                return str(value)[:_MESSAGE_CHARS]
    text = response.text.strip()
    return text[:_MESSAGE_CHARS] if text else response.reason_phrase or "no detail"
