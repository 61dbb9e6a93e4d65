"""Per-leg fusion weights: weighted RRF, a version's learned fusion record, and bad weights refused by name."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.common.config import FusionSettings, RerankingSettings, Settings
from services.common.errors import FeedrankError
from services.retriever import fusion
from services.retriever.runtime_config import RuntimeConfig

LEX = [("a", 12.0), ("b", 9.0), ("c", 3.0)]
VEC = [("c", 0.9), ("d", 0.8), ("a", 0.5)]
LEGS = {"lexical": LEX, "vector": VEC}


def test_equal_weights_are_plain_rrf_and_unequal_ones_tilt_it():
    plain = fusion.rrf(LEGS, 60)
    assert fusion.rrf(LEGS, 60, {"lexical": 0.5, "vector": 0.5}) == pytest.approx(plain)
    assert fusion.rrf(LEGS, 60, {"lexical": 3.0, "vector": 3.0}) == pytest.approx(plain)
    tilted = fusion.rrf(LEGS, 60, {"lexical": 0.2, "vector": 0.8})
    assert tilted["d"] == pytest.approx(1.6 / 62) and tilted["b"] == pytest.approx(0.4 / 62)
    vector_only = [f.doc_id for f in fusion.fuse(LEGS, "rrf", weights={"lexical": 0.0, "vector": 1.0})]
    assert vector_only[:3] == ["c", "d", "a"]


def test_a_learned_record_round_trips_and_applies_over_the_configured_fusion():
    configured = FusionSettings(rrf_k=30)
    chosen = FusionSettings(method="dbsf", sparse_weight=0.1, vector_weight=0.9)
    record = fusion.learned(chosen)
    assert record["weights"] == {"lexical": 0.1, "vector": 0.9}
    assert fusion.served_fusion(record, configured) == chosen
    assert fusion.served_fusion(None, configured) == configured
    partial = fusion.served_fusion({"weights": {"vector": 0.7}}, configured)
    assert (partial.method, partial.rrf_k, partial.sparse_weight, partial.vector_weight) == ("rrf", 30, 0.5, 0.7)


@pytest.mark.parametrize("record,field", [
    ({"weights": {"vector": -0.5}}, "fusion.weights.vector"),
    ({"weights": {"lexical": "heavy"}}, "fusion.weights.lexical"),
    ({"weights": {"sparse": 1.0}}, "fusion.weights.sparse"),
    ({"weights": [1, 2]}, "fusion.weights"),
    ({"weights": {"lexical": 0.0, "vector": 0.0}}, "fusion"),
    ({"method": "borda"}, "fusion.method"),
    ("rrf", "fusion"),
])
def test_a_bad_learned_record_names_its_field(record, field):
    with pytest.raises(FeedrankError) as err:
        fusion.served_fusion(record, FusionSettings())
    assert err.value.field == field


def test_negative_or_all_zero_weights_are_refused_in_settings_and_at_run_time(tmp_path):
    with pytest.raises(ValidationError, match="vector_weight"):
        Settings(fusion={"vector_weight": -0.1})
    with pytest.raises(ValidationError, match="both 0"):
        FusionSettings(vector_weight=0, sparse_weight=0)
    with pytest.raises(ValidationError, match="vector_shares"):
        Settings(training={"fusion_choice": {"vector_shares": [-0.2]}})
    # UpdateConfig / PATCH /config/fusion and a SearchRequest's fusion fields go through the same check.
    config = RuntimeConfig(tmp_path / "config.json", FusionSettings(), RerankingSettings())
    for changes, field in (({"sparse_weight": -1.0}, "fusion.sparse_weight"),
                           ({"sparse_weight": 0.0, "vector_weight": 0.0}, "fusion")):
        with pytest.raises(FeedrankError) as err:
            config.update(changes, {})
        assert err.value.field == field
    assert not (tmp_path / "config.json").exists()  # refused before anything was written
