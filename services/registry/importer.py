"""Turn a Hugging Face cross-encoder folder into a registry version: export, smoke test, checksum."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from services.common.config import EngineSettings
from services.common.errors import ErrorKind, FeedrankError
from services.engine.export import export_cross_encoder
from services.registry.store import Manifest, Registry
from services.reranker.scorer import OnnxCrossEncoder


def import_model(
    registry: Registry, source: Path, engine: EngineSettings, *, alias: str | None = None,
    max_length: int | None = None, reason: str = "import", manifest_fields: dict[str, Any] | None = None,
) -> Manifest:
    with tempfile.TemporaryDirectory(prefix="feedrank-export-") as tmp:
        exported = Path(tmp)
        fields = export_cross_encoder(
            source, exported, max_length=max_length, trust_remote_code=engine.trust_remote_code
        )
        fields.update(manifest_fields or {})
        provisional = Manifest.from_json({**fields, "version_id": "smoke", "files": {}, "created_at": ""})
        try:
            OnnxCrossEncoder(exported, provisional, engine.model_copy(update={"precision": "fp32"})).warmup()
        except Exception as err:
            raise FeedrankError(ErrorKind.FAILED_PRECONDITION, f"exported model fails its smoke test: {err}") from err
        manifest = registry.publish(exported, fields)
    if alias:
        registry.set_alias(alias, manifest.version_id, reason)
    return manifest
