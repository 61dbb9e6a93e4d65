"""Turn Hugging Face model folders into registry versions: export, smoke test, checksum, publish."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from services.common.config import EngineSettings
from services.common.errors import ErrorKind, FeedrankError, invalid
from services.engine.export import export_bi_encoder, export_cross_encoder
from services.engine.manifest import Blend
from services.engine.scorer import load_scorer
from services.registry.store import GLOBAL, Manifest, Registry, check_alias, check_scope


def import_model(
    registry: Registry, source: Path, engine: EngineSettings, *, alias: str | None = None, corpus_id: str = GLOBAL,
    max_length: int | None = None, reason: str = "import", manifest_fields: dict[str, Any] | None = None,
) -> Manifest:
    """A cross-encoder folder as a new version; `alias` (of corpus `corpus_id`, GLOBAL for every corpus
    without its own) is pointed at it."""
    # Checked before the export, which takes a while, and before publishing, which cannot be undone.
    if alias:
        check_alias(alias)
        check_scope(corpus_id)
    if max_length is not None and max_length < 1:
        raise invalid("max_length", f"must be at least 1 token, got {max_length}")
    with tempfile.TemporaryDirectory(prefix="feedrank-export-") as tmp:
        fields = export_cross_encoder(source, Path(tmp), max_length=max_length, trust_remote_code=engine.trust_remote_code)
        return _publish(registry, Path(tmp), {**fields, **(manifest_fields or {})}, engine, alias, corpus_id, reason)


def import_bi_encoder(
    registry: Registry, query_source: Path, doc_source: Path, engine: EngineSettings, *, query_max_length: int,
    doc_max_length: int, blend: Blend | None = None, adapter: np.ndarray | None = None,
    alias: str | None = None, corpus_id: str = GLOBAL, reason: str = "import",
    manifest_fields: dict[str, Any] | None = None,
) -> Manifest:
    """A bi-encoder (query tower, document tower) as a new version, optionally with a linear query adapter
    (queries become normalize(q + q W)) and blended with the fused order."""
    with tempfile.TemporaryDirectory(prefix="feedrank-export-") as tmp:
        fields = export_bi_encoder(query_source, doc_source, Path(tmp), query_max_length=query_max_length,
                                   doc_max_length=doc_max_length)
        if adapter is not None:
            np.save(Path(tmp) / "adapter.npy", adapter.astype(np.float32))
        extra = {**fields.pop("extra"), **((manifest_fields or {}).get("extra") or {})}
        fields = {**fields, **({"blend": blend} if blend else {}), **(manifest_fields or {}), "extra": extra}
        return _publish(registry, Path(tmp), fields, engine, alias, corpus_id, reason)


def _publish(registry: Registry, exported: Path, fields: dict[str, Any], engine: EngineSettings,
             alias: str | None, corpus_id: str, reason: str) -> Manifest:
    provisional = Manifest.from_json({**fields, "version_id": "smoke", "files": {}, "created_at": ""})
    try:
        load_scorer(exported, provisional, engine.model_copy(update={"precision": "fp32"})).warmup()
    except Exception as err:
        raise FeedrankError(ErrorKind.FAILED_PRECONDITION, f"exported model fails its smoke test: {err}") from err
    manifest = registry.publish(exported, fields)
    if alias:
        registry.set_alias(alias, manifest.version_id, reason, corpus_id=corpus_id)
    return manifest
