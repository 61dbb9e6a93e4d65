"""Local HTTP servers that speak each cloud provider's documented rerank API.

`FakeRerankServer(provider, api_key)` listens on a free loopback port and answers the provider's
rerank path the way the provider documents it: it checks the bearer key, the JSON body (required
and allowed fields, types, known model), scores documents by word overlap with the query, honours
top_n/top_k and reports billed units in the provider's own usage field. Tests can make it fail
(`fail`), answer with any raw body (`respond_raw`) or answer slowly (`delay_s`); every request it
saw is kept in `requests`.

Shapes follow the providers' API references:
- Cohere  POST /v2/rerank  {model, query, documents[str], top_n?, max_tokens_per_doc?}
          -> {id, results[{index, relevance_score}], meta{api_version, billed_units{search_units}}};
          errors {"message"}.
- Voyage  POST /v1/rerank  {query, documents, model, top_k?, return_documents?, truncation?}
          -> {object: "list", data[{relevance_score, index}], model, usage{total_tokens}}; errors {"detail"}.
- Jina    POST /v1/rerank  {model, query, documents, top_n?, return_documents?}
          -> {model, usage{total_tokens, prompt_tokens}, results[{index, relevance_score, document?}]};
          errors {"detail"}.
"""

from __future__ import annotations

import json
import math
import re
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class _Spec:
    path: str
    required: frozenset[str]
    allowed: frozenset[str]
    top_field: str
    error_key: str
    models: frozenset[str]


SPECS: dict[str, _Spec] = {
    "cohere": _Spec(
        "/v2/rerank",
        frozenset({"model", "query", "documents"}),
        frozenset({"model", "query", "documents", "top_n", "max_tokens_per_doc"}),
        "top_n",
        "message",
        frozenset({"rerank-v3.5", "rerank-english-v3.0", "rerank-multilingual-v3.0"}),
    ),
    "voyage": _Spec(
        "/v1/rerank",
        frozenset({"query", "documents", "model"}),
        frozenset({"query", "documents", "model", "top_k", "return_documents", "truncation"}),
        "top_k",
        "detail",
        frozenset({"rerank-2", "rerank-2-lite", "rerank-2.5", "rerank-2.5-lite"}),
    ),
    "jina": _Spec(
        "/v1/rerank",
        frozenset({"model", "query", "documents"}),
        frozenset({"model", "query", "documents", "top_n", "return_documents"}),
        "top_n",
        "detail",
        frozenset({"jina-reranker-v2-base-multilingual"}),
    ),
}

_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def relevance(query: str, document: str) -> float:
    """The fake model: the share of the query's distinct words that occur in the document."""
    q = set(words(query))
    return len(q & set(words(document))) / len(q) if q else 0.0


def billed_units(provider: str, query: str, documents: list[str]) -> int:
    """What the fake bills, following each provider's documented unit."""
    if provider == "cohere":  # one search unit per query with up to 100 documents
        return math.ceil(len(documents) / 100)
    q = len(words(query))
    if provider == "voyage":  # query tokens x documents + all document tokens
        return q * len(documents) + sum(len(words(d)) for d in documents)
    return sum(q + len(words(d)) for d in documents)  # jina: every (query, document) pair read


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class _Override:
    status: int
    body: bytes
    content_type: str = "application/json"


@dataclass
class FakeRerankServer:
    provider: str
    api_key: str
    delay_s: float = 0.0
    requests: list[Recorded] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.spec = SPECS[self.provider]
        self._override: _Override | None = None
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        # Slow handlers must not hold up close(): they are daemons, and close() wakes them.
        self._server.daemon_threads = True
        self._server.block_on_close = False
        # A short poll interval keeps shutdown() (which waits for the next poll) quick.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeRerankServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def fail(self, status: int, message: str) -> None:
        """Answer every request with `status` and the provider's error body carrying `message`."""
        self.respond_raw(status, json.dumps({self.spec.error_key: message}).encode())

    def respond_raw(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self._override = _Override(status, body, content_type)

    def reset(self) -> None:
        self._override = None
        self.delay_s = 0.0

    def _answer(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, bytes, str]:
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        self.requests.append(Recorded(path, headers, body))
        if self.delay_s:
            self._stopping.wait(self.delay_s)
        if self._override is not None:
            return self._override.status, self._override.body, self._override.content_type
        if path != self.spec.path:
            return self._error(404, f"no route for {path}")
        if headers.get("authorization") != f"Bearer {self.api_key}":
            return self._error(401, "invalid api token")
        if not headers.get("content-type", "").startswith("application/json"):
            return self._error(400, "content-type must be application/json")
        problem = self._check(body)
        if problem:
            return self._error(400, problem)
        return 200, json.dumps(self._rerank(body)).encode(), "application/json"

    def _check(self, body: Any) -> str:
        spec = self.spec
        if not isinstance(body, dict):
            return "body must be a JSON object"
        missing = spec.required - body.keys()
        if missing:
            return f"missing required field(s): {sorted(missing)}"
        unknown = body.keys() - spec.allowed
        if unknown:
            return f"unknown field(s): {sorted(unknown)}"
        if not isinstance(body["query"], str) or not body["query"]:
            return "query must be a non-empty string"
        docs = body["documents"]
        if not isinstance(docs, list) or not docs or not all(isinstance(d, str) for d in docs):
            return "documents must be a non-empty list of strings"
        if len(docs) > 1000:
            return "at most 1000 documents"
        if body["model"] not in spec.models:
            return f"model '{body['model']}' not found"
        top = body.get(spec.top_field)
        if top is not None and (not isinstance(top, int) or isinstance(top, bool) or top < 1):
            return f"{spec.top_field} must be a positive integer"
        return ""

    def _rerank(self, body: dict[str, Any]) -> dict[str, Any]:
        query, docs = body["query"], body["documents"]
        ranked = sorted(range(len(docs)), key=lambda i: (-relevance(query, docs[i]), i))
        top = body.get(self.spec.top_field)
        ranked = ranked[: top or len(docs)]
        units = billed_units(self.provider, query, docs)
        if self.provider == "cohere":
            return {
                "id": str(uuid.uuid4()),
                "results": [{"index": i, "relevance_score": relevance(query, docs[i])} for i in ranked],
                "meta": {"api_version": {"version": "2", "is_experimental": False},
                         "billed_units": {"search_units": units}},
            }
        if self.provider == "voyage":
            with_docs = body.get("return_documents", False)
            return {
                "object": "list",
                "data": [{"relevance_score": relevance(query, docs[i]), "index": i}
                         | ({"document": docs[i]} if with_docs else {}) for i in ranked],
                "model": body["model"],
                "usage": {"total_tokens": units},
            }
        with_docs = body.get("return_documents", True)  # Jina returns documents unless told not to
        return {
            "model": body["model"],
            "usage": {"total_tokens": units, "prompt_tokens": units},
            "results": [{"index": i, "relevance_score": relevance(query, docs[i])}
                        | ({"document": {"text": docs[i]}} if with_docs else {}) for i in ranked],
        }

    def _error(self, status: int, message: str) -> tuple[int, bytes, str]:
        return status, json.dumps({self.spec.error_key: message}).encode(), "application/json"


def _handler_for(fake: FakeRerankServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, body, content_type = fake._answer(self.path, headers, raw)
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (the timeout test); nothing left to tell it

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base class name
            pass  # keep the test output clean; requests are recorded in fake.requests

    return Handler
