"""Manifests: behaviour switches are typed fields; a manifest.json written before they were (switches in
`extra`) still loads, with the same switches."""

from __future__ import annotations

import json

import numpy as np
import pytest

from services.common.errors import ErrorKind, FeedrankError
from services.common.legs import Candidate, LegHit
from services.engine.manifest import Blend, LinearHead, Manifest
from services.registry.store import FileRegistry
from services.reranker.combine import final_scores

# A query-adapter version's manifest.json as the trainer wrote it before the switches were typed.
OLD_ADAPTER_VERSION = {
    "version_id": "v20260101-000000-abcdef", "kind": "bi-encoder", "base_model": "r1 (adapter)", "max_length": 256,
    "activation": "identity", "files": {}, "created_at": "2026-01-01T00:00:00Z", "run_id": "r1",
    "corpus_id": "scifact", "triplet_files": ["/data/triplets/scifact/a.jsonl"], "metrics": {"dev_ndcg@10": 0.8},
    "extra": {"query_max_length": 48, "shared_towers": True, "blend": {"weight": 0.7, "depth": 100},
              "doc_tower_is_dense_leg": True, "vector_leg_adapter": True, "recipe": "query-adapter",
              "triplets": 412, "start_from": "base", "by_source": {"qrels": 412}},
}
# A cross-encoder run's, same era.
OLD_CROSS_ENCODER_VERSION = {
    "version_id": "v20260101-000001-abcdef", "kind": "cross-encoder", "base_model": "MiniLM", "max_length": 256,
    "activation": "sigmoid", "files": {}, "created_at": "2026-01-01T00:00:01Z", "run_id": "r2",
    "extra": {"hf_dir": "/data/runs/r2/model", "triplets": 90, "loss": "bce", "start_from": "champion",
              "by_source": {"events": 90}},
}


def _write_old(registry: FileRegistry, tmp_path, old: dict) -> str:
    """A version folder whose manifest.json has the old layout (checksums of its real files)."""
    folder = tmp_path / old["version_id"]
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"weights")
    published = registry.publish(folder, {k: v for k, v in old.items() if k not in ("files", "created_at", "extra")})
    path = registry.root / "versions" / published.version_id / "manifest.json"
    path.write_text(json.dumps({**old, "files": published.files}))
    return published.version_id


def test_an_old_adapter_manifest_loads_with_its_switches(tmp_path):
    registry = FileRegistry(tmp_path / "reg")
    manifest = registry.manifest(_write_old(registry, tmp_path, OLD_ADAPTER_VERSION))
    assert manifest.query_max_length == 48 and manifest.doc_tower_is_dense_leg and manifest.vector_leg_adapter
    assert manifest.triplets == 412 and manifest.hf_dir == ""
    assert manifest.head == manifest.blend == Blend(weight=0.7, depth=100) and manifest.linear_head is None
    # What is only reported stays in extra; no switch is left there to be read by string.
    assert manifest.extra == {"shared_towers": True, "recipe": "query-adapter", "start_from": "base",
                              "by_source": {"qrels": 412}}
    # The head serves as before: the fused top 100 blended 0.3 fused / 0.7 model.
    legs = [Candidate(f"d{r}", score, r, {"lexical": LegHit(r, 0.0), "vector": LegHit(r, 0.0)})
            for r, score in ((1, 0.03), (2, 0.02), (3, 0.01))]
    served = final_scores(manifest.head, np.array([0.1, 0.2, 0.9], np.float32), legs)
    assert list(np.argsort(-served, kind="stable")) == [2, 0, 1]


def test_an_old_cross_encoder_manifest_loads_with_its_switches(tmp_path):
    registry = FileRegistry(tmp_path / "reg")
    manifest = registry.manifest(_write_old(registry, tmp_path, OLD_CROSS_ENCODER_VERSION))
    assert manifest.hf_dir == "/data/runs/r2/model" and manifest.triplets == 90
    assert manifest.head is None and not manifest.doc_tower_is_dense_leg and not manifest.vector_leg_adapter
    assert manifest.query_max_length == 64  # the default the scorer always used for a manifest without it
    assert set(manifest.extra) == {"loss", "start_from", "by_source"}


def test_new_manifests_write_the_switches_as_fields(tmp_path):
    registry = FileRegistry(tmp_path / "reg")
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"weights")
    head = LinearHead(depth=30, coef=[1.0] * 7, intercept=0.5, mean=[0.0] * 7, scale=[1.0] * 7)
    published = registry.publish(folder, {"kind": "bi-encoder", "base_model": "b", "max_length": 256,
                                          "activation": "identity", "linear_head": head, "triplets": 7,
                                          "vector_leg_adapter": True, "extra": {"recipe": "query-adapter"}})
    on_disk = json.loads((registry.root / "versions" / published.version_id / "manifest.json").read_text())
    assert on_disk["linear_head"]["coef"] == [1.0] * 7 and on_disk["triplets"] == 7 and on_disk["vector_leg_adapter"]
    assert on_disk["extra"] == {"recipe": "query-adapter"}
    assert registry.manifest(published.version_id) == published
    assert Manifest.from_json(published.to_json()).head == head


def test_a_manifest_with_two_heads_is_refused(tmp_path):
    registry = FileRegistry(tmp_path / "reg")
    version_id = _write_old(registry, tmp_path, {
        **OLD_ADAPTER_VERSION,
        "linear_head": {"depth": 3, "coef": [0.0] * 7, "intercept": 0.0, "mean": [0.0] * 7, "scale": [1.0] * 7},
    })
    with pytest.raises(FeedrankError) as err:
        registry.manifest(version_id)
    assert err.value.kind is ErrorKind.FAILED_PRECONDITION and "one head" in str(err.value)
