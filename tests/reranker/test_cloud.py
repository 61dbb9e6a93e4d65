"""Cloud rerank providers against real local HTTP servers speaking each provider's API."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math

import pytest
from prometheus_client import REGISTRY

from services.common.config import RerankingSettings
from services.common.errors import ErrorKind, FeedrankError
from services.reranker.catalog import Catalog
from services.reranker.cloud import CloudReranker, make_cloud_reranker
from tests.conftest import free_port
from tests.reranker.cloud_fakes import FakeRerankServer, billed_units, relevance

KEY = "sk-test-9f8e7d6c5b4a"
ENV = {"cohere": "COHERE_API_KEY", "voyage": "VOYAGE_API_KEY", "jina": "JINA_API_KEY"}
MODELS = {"cohere": "rerank-v3.5", "voyage": "rerank-2", "jina": "jina-reranker-v2-base-multilingual"}
PROVIDERS = sorted(MODELS)

QUERY = "red apple pie recipe"
TEXTS = [
    "a red car parked outside",
    "apple pie recipe with cinnamon",
    "the best red apple pie recipe",
    "nothing related at all",
    "red apples in autumn",
]


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load()


@pytest.fixture
def make(catalog, monkeypatch):
    """make(provider, fake=None, **settings) -> a CloudReranker pointed at `fake` (or the given base URL)."""

    def build(provider: str, fake: FakeRerankServer | None = None, **overrides) -> CloudReranker:
        monkeypatch.setenv(ENV[provider], KEY)
        fields = {
            "reranker_mode": "cloud",
            "reranker_cloud_provider": provider,
            "reranker_cloud_model": MODELS[provider],
            "reranker_cloud_base_url": fake.url if fake else "",
            "reranker_timeout": 5.0,
        } | overrides
        return make_cloud_reranker(RerankingSettings(**fields), catalog)

    return build


def call(reranker: CloudReranker, query: str = QUERY, texts: list[str] = TEXTS, top_n: int = 0):
    async def go():
        try:
            return await reranker.rerank(query, texts, top_n)
        finally:
            await reranker.aclose()

    return asyncio.run(go())


def fails(reranker: CloudReranker, **kwargs) -> FeedrankError:
    with pytest.raises(FeedrankError) as caught:
        call(reranker, **kwargs)
    return caught.value


def expected_body(provider: str, documents: list[str], top_n: int) -> dict:
    if provider == "cohere":
        return {"model": "rerank-v3.5", "query": QUERY, "documents": documents, "top_n": top_n}
    if provider == "voyage":
        return {"query": QUERY, "documents": documents, "model": "rerank-2", "top_k": top_n}
    return {"model": MODELS["jina"], "query": QUERY, "documents": documents, "top_n": top_n,
            "return_documents": False}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_happy_path_scores_in_input_order_with_billing(provider, make):
    before = REGISTRY.get_sample_value(
        "feedrank_cloud_billed_units_total", {"provider": provider, "model": MODELS[provider]}
    ) or 0.0
    with FakeRerankServer(provider, KEY) as fake:
        reranker = make(provider, fake)
        result = call(reranker, top_n=3)

    # The provider saw exactly its documented body, with our key as a bearer token.
    (request,) = fake.requests
    assert request.path == fake.spec.path
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.body == expected_body(provider, TEXTS, 3)

    # Only the provider's top 3 have scores, each at its input position; the rest are -inf.
    ranked = sorted(range(len(TEXTS)), key=lambda i: (-relevance(QUERY, TEXTS[i]), i))[:3]
    assert ranked[0] == 2  # the exact match wins
    for i, score in enumerate(result.scores):
        assert score == (relevance(QUERY, TEXTS[i]) if i in ranked else -math.inf)
    assert (result.provider, result.model) == (provider, MODELS[provider])

    units = billed_units(provider, QUERY, TEXTS)
    assert result.billed_units == units
    after = REGISTRY.get_sample_value(
        "feedrank_cloud_billed_units_total", {"provider": provider, "model": MODELS[provider]}
    )
    assert after - before == units
    (usage,) = reranker.usage()
    assert usage == {"provider": provider, "model": MODELS[provider], "billed_units": units,
                     "estimated_cost_usd": pytest.approx(usage["estimated_cost_usd"])}


def test_estimated_cost_follows_the_catalog_price(make, catalog):
    with FakeRerankServer("cohere", KEY) as fake:
        cohere = make("cohere", fake, reranker_cloud_top_n=250)
        call(cohere, texts=[f"doc {i} red apple" for i in range(250)])
    # 250 documents are 3 search units at $2.00 per 1,000 searches.
    assert cohere.usage()[0]["billed_units"] == 3
    assert cohere.usage()[0]["estimated_cost_usd"] == pytest.approx(3 * 2.0 / 1000)

    with FakeRerankServer("voyage", KEY) as fake:
        voyage = make("voyage", fake)
        call(voyage)
    tokens = billed_units("voyage", QUERY, TEXTS)
    assert voyage.usage()[0]["estimated_cost_usd"] == pytest.approx(tokens * 0.05 / 1_000_000)

    # Jina's price is not in the catalog: tokens are counted, cost is not made up.
    assert catalog.get("jina", MODELS["jina"]).price_per_unit is None
    with FakeRerankServer("jina", KEY) as fake:
        jina = make("jina", fake)
        call(jina)
    assert jina.usage()[0]["billed_units"] == billed_units("jina", QUERY, TEXTS)
    assert jina.usage()[0]["estimated_cost_usd"] == 0.0


@pytest.mark.parametrize("provider", PROVIDERS)
def test_only_the_first_cloud_top_n_texts_are_sent(provider, make):
    with FakeRerankServer(provider, KEY) as fake:
        result = call(make(provider, fake, reranker_cloud_top_n=3), top_n=0)
    # top_n=0 asks for every document sent; the texts past the cap are never sent and score -inf.
    assert fake.requests[0].body == expected_body(provider, TEXTS[:3], 3)
    assert result.scores[:3] == [relevance(QUERY, t) for t in TEXTS[:3]]
    assert result.scores[3:] == [-math.inf, -math.inf]


def test_top_n_above_the_documents_sent_is_clamped(make):
    with FakeRerankServer("voyage", KEY) as fake:
        result = call(make("voyage", fake, reranker_cloud_top_n=2), top_n=10)
    assert fake.requests[0].body["top_k"] == 2
    assert len(result.scores) == len(TEXTS)


def test_no_texts_makes_no_call(make):
    with FakeRerankServer("cohere", KEY) as fake:
        result = call(make("cohere", fake), texts=[])
    assert result.scores == [] and result.billed_units == 0
    assert fake.requests == []


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (401, ErrorKind.FAILED_PRECONDITION),
        (403, ErrorKind.FAILED_PRECONDITION),
        (429, ErrorKind.RESOURCE_EXHAUSTED),
        (400, ErrorKind.INVALID_ARGUMENT),
        (422, ErrorKind.INVALID_ARGUMENT),
        (500, ErrorKind.UNAVAILABLE),
        (503, ErrorKind.UNAVAILABLE),
    ],
)
def test_http_errors_map_to_error_kinds(provider, status, kind, make):
    with FakeRerankServer(provider, KEY) as fake:
        fake.fail(status, f"provider says {status}")
        err = fails(make(provider, fake))
    assert err.kind is kind
    if status in (401, 403):
        assert "cloud provider rejected the API key" in err.message
        assert ENV[provider] in err.message
    else:  # the provider's own message is passed on
        assert f"provider says {status}" in err.message


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_wrong_key_is_rejected_by_the_provider(provider, make):
    with FakeRerankServer(provider, "sk-the-right-one") as fake:
        err = fails(make(provider, fake))
    assert err.kind is ErrorKind.FAILED_PRECONDITION
    assert "rejected the API key" in err.message


def test_a_model_the_provider_does_not_serve_is_invalid_argument_with_its_message(make):
    # rerank-english-v3.0 is in our catalog; this fake Cohere knows only rerank-v3.5.
    with FakeRerankServer("cohere", KEY) as fake:
        fake.spec = dataclasses.replace(fake.spec, models=frozenset({"rerank-v3.5"}))
        err = fails(make("cohere", fake, reranker_cloud_model="rerank-english-v3.0"))
    assert err.kind is ErrorKind.INVALID_ARGUMENT
    assert "model 'rerank-english-v3.0' not found" in err.message


def test_a_slow_provider_hits_the_timeout(make):
    with FakeRerankServer("jina", KEY) as fake:
        fake.delay_s = 30.0  # the server is woken when the test closes it
        err = fails(make("jina", fake, reranker_timeout=0.3))
    assert err.kind is ErrorKind.DEADLINE_EXCEEDED
    assert "reranker_timeout" in err.message


def test_an_unreachable_provider_is_unavailable(make, monkeypatch):
    monkeypatch.setenv(ENV["voyage"], KEY)
    err = fails(make("voyage", reranker_cloud_base_url=f"http://127.0.0.1:{free_port()}"))
    assert err.kind is ErrorKind.UNAVAILABLE
    assert "cannot reach voyage" in err.message


def test_a_redirect_is_not_followed(make):
    with FakeRerankServer("cohere", KEY) as fake:
        fake.respond_raw(307, b"")
        err = fails(make("cohere", fake))
    assert err.kind is ErrorKind.UNAVAILABLE and "HTTP 307" in err.message
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    ("provider", "body", "named"),
    [
        ("cohere", b"<html>oops</html>", "not JSON"),
        ("cohere", b"[]", "not a JSON object"),
        ("cohere", json.dumps({"meta": {}}).encode(), "'results' is missing or not a list"),
        ("voyage", json.dumps({"results": []}).encode(), "'data' is missing"),
        ("jina", json.dumps({"results": [{"index": 7, "relevance_score": 0.5}]}).encode(), "index 7"),
        ("jina", json.dumps({"results": [{"index": -1, "relevance_score": 0.5}]}).encode(), "index -1"),
        ("cohere", json.dumps({"results": [{"index": 0, "relevance_score": 0.5},
                                           {"index": 0, "relevance_score": 0.4}]}).encode(), "scored twice"),
        ("voyage", json.dumps({"data": [{"index": 0, "relevance_score": "high"}]}).encode(),
         "relevance_score 'high'"),
        ("voyage", json.dumps({"data": [{"index": 0, "relevance_score": 0.5}],
                               "usage": {"total_tokens": "many"}}).encode(), "usage.total_tokens"),
        ("cohere", json.dumps({"results": ["x"]}).encode(), "result 0 is not an object"),
    ],
)
def test_a_malformed_response_is_unavailable_naming_the_problem(provider, body, named, make):
    with FakeRerankServer(provider, KEY) as fake:
        fake.respond_raw(200, body)
        err = fails(make(provider, fake))
    assert err.kind is ErrorKind.UNAVAILABLE
    assert "malformed" in err.message or "not JSON" in err.message
    assert named in err.message


def test_a_response_without_usage_still_scores(make):
    with FakeRerankServer("jina", KEY) as fake:
        fake.respond_raw(200, json.dumps({"results": [{"index": 1, "relevance_score": 0.9}]}).encode())
        result = call(make("jina", fake))
    assert result.billed_units == 0
    assert result.scores[1] == 0.9 and result.scores[0] == -math.inf


def test_the_api_key_never_reaches_logs_or_errors(make, caplog):
    caplog.set_level(logging.DEBUG)  # httpx and httpcore included
    errors: list[FeedrankError] = []
    with FakeRerankServer("cohere", KEY) as fake:
        reranker = make("cohere", fake)
        assert KEY not in repr(reranker) and KEY not in repr(reranker.__dict__.get("_client"))
        call(reranker)
        for status in (400, 401, 429, 500):
            # A provider that echoes the key back in its message does not get it through us.
            fake.fail(status, f"key {KEY} is not allowed here")
            errors.append(fails(make("cohere", fake)))
        fake.respond_raw(200, f"not json {KEY}".encode())
        errors.append(fails(make("cohere", fake)))
    errors.append(fails(make("cohere", reranker_cloud_base_url=f"http://127.0.0.1:{free_port()}")))
    assert fake.requests[0].headers["authorization"] == f"Bearer {KEY}"  # it was really sent
    for err in errors:
        assert KEY not in str(err) and KEY not in repr(err)
    assert "[api key]" in errors[0].message
    assert caplog.records, "expected the client to log"
    assert KEY not in caplog.text
    assert all(KEY not in str(r.__dict__) for r in caplog.records)


def test_make_needs_the_providers_key(catalog, monkeypatch):
    for env in ENV.values():
        monkeypatch.delenv(env, raising=False)
    for provider in PROVIDERS:
        settings = RerankingSettings(reranker_cloud_provider=provider, reranker_cloud_model=MODELS[provider])
        with pytest.raises(FeedrankError) as caught:
            make_cloud_reranker(settings, catalog)
        assert caught.value.kind is ErrorKind.FAILED_PRECONDITION
        assert ENV[provider] in caught.value.message


def test_make_refuses_a_model_outside_the_catalog(make):
    with pytest.raises(FeedrankError) as caught:
        make("voyage", reranker_cloud_model="rerank-99")
    assert caught.value.kind is ErrorKind.INVALID_ARGUMENT
    assert caught.value.field == "reranker_cloud_model"
    assert "rerank-2" in caught.value.message  # it lists what the provider does have


def test_make_refuses_an_embedding_model(tmp_path, monkeypatch):
    path = tmp_path / "models.json"
    path.write_text(json.dumps({"models": [
        {"provider": "cohere", "model": "embed-v4.0", "components": ["EMB"], "max_tokens": 512,
         "local": False},
    ]}))
    monkeypatch.setenv("COHERE_API_KEY", KEY)
    settings = RerankingSettings(reranker_cloud_provider="cohere", reranker_cloud_model="embed-v4.0")
    with pytest.raises(FeedrankError) as caught:
        make_cloud_reranker(settings, Catalog.load(path))
    assert caught.value.field == "reranker_cloud_model"


@pytest.mark.parametrize("url", ["ftp://example.com", "not a url", "http://"])
def test_make_refuses_a_bad_base_url(url, make):
    with pytest.raises(FeedrankError) as caught:
        make("cohere", reranker_cloud_base_url=url)
    assert caught.value.field == "reranker_cloud_base_url"


def test_default_base_urls_are_the_providers_own(make):
    expected = {
        "cohere": "https://api.cohere.com",
        "voyage": "https://api.voyageai.com",
        "jina": "https://api.jina.ai",
    }
    for provider, url in expected.items():
        reranker = make(provider)
        assert reranker.base_url == url
        asyncio.run(reranker.aclose())
