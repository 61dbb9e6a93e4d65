"""Fusion and reranking settings that UpdateConfig may change while the retriever runs.

The configured values (env / YAML) are the base; changes are validated by the same pydantic
groups, persisted to `$FEEDRANK_DATA_DIR/retriever/config.json` (atomically) and survive
restarts. Each update swaps in new frozen objects, so a search sees one consistent pair.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from services.common.config import FusionSettings, RerankingSettings, validated
from services.common.errors import invalid

# The reranking fields a client may change at run time (the seed's PATCH /config/reranking).
RERANKING_FIELDS = (
    "reranker_mode",
    "reranker_local_model",
    "reranker_cloud_provider",
    "reranker_cloud_model",
    "tribrid_reranker_topn",
    "rerank_input_snippet_chars",
    "reranker_timeout",
)
FUSION_FIELDS = tuple(FusionSettings.model_fields)


class RuntimeConfig:
    def __init__(self, path: Path, fusion: FusionSettings, reranking: RerankingSettings):
        self.path = path
        self._lock = threading.Lock()
        saved = json.loads(path.read_text()) if path.is_file() else {}
        self._overrides: dict[str, dict[str, Any]] = {
            "fusion": saved.get("fusion", {}),
            "reranking": saved.get("reranking", {}),
        }
        self._fusion = validated("fusion", FusionSettings, fusion, self._overrides["fusion"])
        self._reranking = validated("reranking", RerankingSettings, reranking, self._overrides["reranking"])

    @property
    def fusion(self) -> FusionSettings:
        return self._fusion

    @property
    def reranking(self) -> RerankingSettings:
        return self._reranking

    def update(self, fusion: dict[str, Any], reranking: dict[str, Any]) -> tuple[FusionSettings, RerankingSettings]:
        for name in fusion:
            if name not in FUSION_FIELDS:
                raise invalid(f"fusion.{name}", "not a fusion setting")
        for name in reranking:
            if name not in RERANKING_FIELDS:
                raise invalid(f"reranking.{name}", "cannot be changed at run time")
        with self._lock:
            new_fusion = validated("fusion", FusionSettings, self._fusion, fusion)
            new_reranking = validated("reranking", RerankingSettings, self._reranking, reranking)
            overrides = {
                "fusion": {**self._overrides["fusion"], **fusion},
                "reranking": {**self._overrides["reranking"], **reranking},
            }
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(overrides, indent=2))
            os.replace(tmp, self.path)
            self._overrides, self._fusion, self._reranking = overrides, new_fusion, new_reranking
            return new_fusion, new_reranking
