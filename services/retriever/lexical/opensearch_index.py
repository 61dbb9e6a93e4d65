"""BM25 on an OpenSearch server through opensearch-py, one index per corpus.

The index declares BM25 similarity with the configured k1/b and the built-in `english`
analyzer (stop words + stemming) over title + text in one field, like the tantivy index.
"""

from __future__ import annotations

from opensearchpy import OpenSearch, helpers
from opensearchpy.exceptions import NotFoundError

from services.common.config import RetrievalSettings
from services.common.documents import Doc
from services.retriever.lexical.base import Hits


def connect(settings: RetrievalSettings) -> OpenSearch:
    """A client for retrieval.opensearch_url: basic auth when a user is configured, and HTTPS verified
    against retrieval.opensearch_ca_file when given (the system CAs otherwise)."""
    options: dict = {}
    if settings.opensearch_username:
        options["http_auth"] = (settings.opensearch_username, settings.opensearch_password)
    if settings.opensearch_ca_file:
        options["ca_certs"] = settings.opensearch_ca_file
    return OpenSearch(
        hosts=[settings.opensearch_url],
        timeout=settings.opensearch_timeout_s,
        retry_on_timeout=True,
        max_retries=settings.opensearch_bulk_retries,
        verify_certs=True,
        **options,
    )


def index_body(k1: float, b: float) -> dict:
    return {
        "settings": {
            "index": {
                "number_of_shards": 1,
                "number_of_replicas": 0,
                "similarity": {"default": {"type": "BM25", "k1": k1, "b": b}},
            }
        },
        "mappings": {
            "properties": {
                "body": {"type": "text", "analyzer": "english", "similarity": "default"},
            }
        },
    }


class OpenSearchIndex:
    def __init__(self, client: OpenSearch, index: str, *, k1: float, b: float, retries: int):
        self._client = client
        self.index = index
        self._retries = retries
        if not client.indices.exists(index=index):
            client.indices.create(index=index, body=index_body(k1, b))

    def _bulk(self, actions: list[dict]) -> None:
        # max_retries re-sends the documents the cluster refused with 429 (back-pressure);
        # transport errors are retried by the client itself (retry_on_timeout, max_retries).
        helpers.bulk(self._client, actions, max_retries=self._retries, initial_backoff=0.5, raise_on_error=True)

    def upsert(self, docs: list[Doc]) -> None:
        self._bulk(
            [{"_op_type": "index", "_index": self.index, "_id": d.id, "body": f"{d.title}\n{d.text}"} for d in docs]
        )

    def delete(self, ids: list[str]) -> None:
        actions = [{"_op_type": "delete", "_index": self.index, "_id": i} for i in ids]
        # Deleting a document that is not there is not an error for an idempotent delete.
        for ok, item in helpers.streaming_bulk(self._client, actions, raise_on_error=False):
            if not ok and item.get("delete", {}).get("status") != 404:
                raise RuntimeError(f"opensearch delete failed: {item}")

    def commit(self) -> None:
        self._client.indices.refresh(index=self.index)

    def search(self, query: str, k: int) -> Hits:
        body = {"query": {"match": {"body": {"query": query}}}, "size": k, "_source": False}
        response = self._client.search(index=self.index, body=body)
        return [(hit["_id"], float(hit["_score"])) for hit in response["hits"]["hits"]]

    def count(self) -> int:
        return int(self._client.count(index=self.index)["count"])

    def drop(self) -> None:
        try:
            self._client.indices.delete(index=self.index)
        except NotFoundError:
            pass

    def close(self) -> None:
        """The client is shared by every corpus; its owner closes it."""
