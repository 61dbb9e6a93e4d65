"""One suite for both BM25 backends: embedded tantivy and the opensearch-py adapter.

The opensearch adapter runs against noida-db's Elasticsearch-compatible API (an emulator,
not OpenSearch itself): it checks our requests (index settings, bulk, refresh, match query,
deletes), not OpenSearch's own behaviour.
"""

from __future__ import annotations

import uuid

import pytest

from services.common.documents import Doc
from tests.retriever.conftest import DOCS


@pytest.fixture(params=["tantivy", "opensearch"])
def index(request, tmp_path):
    if request.param == "tantivy":
        from services.retriever.lexical.tantivy_index import TantivyIndex

        idx = TantivyIndex(tmp_path / "lexical")
    else:
        from opensearchpy import OpenSearch

        from services.retriever.lexical.opensearch_index import OpenSearchIndex

        url = request.getfixturevalue("noida_es_url")
        client = OpenSearch(hosts=[url], timeout=10, retry_on_timeout=True, max_retries=2)
        idx = OpenSearchIndex(client, f"feedrank-test-{uuid.uuid4().hex[:8]}", k1=0.9, b=0.4, retries=2)
    yield idx
    idx.drop()


def _load(idx):
    idx.upsert(DOCS)
    idx.commit()


def test_finds_the_topic_with_stemming_and_stop_words(index):
    _load(index)
    assert index.count() == len(DOCS)
    hits = index.search("the erupting volcanoes", 3)
    assert hits[0][0].startswith("vol-")  # erupting/eruption and volcanoes/volcano share stems
    assert all(score > 0 for _, score in hits)
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    assert index.search("purring cats hunting mice", 1)[0][0] == "cat-1"


def test_query_of_only_stop_words_or_unknown_terms_returns_nothing(index):
    _load(index)
    assert index.search("zyzzyva qwertyuiop", 5) == []


def test_reingest_is_idempotent_and_updates_replace(index):
    _load(index)
    _load(index)
    assert index.count() == len(DOCS)
    index.upsert([Doc("code-2", "Hash tables", "Volcano eruptions of hashed lava.")])
    index.commit()
    assert index.count() == len(DOCS)
    ids = [d for d, _ in index.search("hashed lava volcano", 5)]
    assert "code-2" in ids
    assert index.search("constant-time lookups buckets", 5) == [] or "code-2" not in [
        d for d, _ in index.search("constant-time lookups buckets", 5)
    ]


def test_delete(index):
    _load(index)
    index.delete(["cat-1", "no-such-doc"])
    index.commit()
    assert index.count() == len(DOCS) - 1
    assert "cat-1" not in [d for d, _ in index.search("cats purr mice", 10)]


def test_k_limits_results(index):
    _load(index)
    assert len(index.search("interest rates loans money array", 2)) == 2
