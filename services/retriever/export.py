"""One-time export of the bi-encoder to ONNX. The only retriever module that imports torch.

The serving path loads the cached export (`embedder.Embedder`) and never reaches this file
once `$FEEDRANK_DATA_DIR/models/embedder/` holds a current export.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from services.engine.export import TOKENIZER_FILES, export_token_encoder

log = logging.getLogger(__name__)


def export_encoder(source: Path, target: Path, fingerprint: str, export_format: int) -> None:
    """Write `model.onnx` (token embeddings, pooling happens in numpy) and the tokenizer into `target`."""
    target.mkdir(parents=True, exist_ok=True)
    (target / "export.json").unlink(missing_ok=True)
    # Variants derived from an earlier graph are stale with it.
    for variant in target.glob("model.*.onnx"):
        variant.unlink()
    export_token_encoder(source, target / "model.onnx")
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, target / name)
    # Written last: its presence with a matching fingerprint marks a complete export.
    (target / "export.json").write_text(json.dumps({"source": str(source), "fingerprint": fingerprint, "format": export_format}))
    log.info("exported embedder to %s", target)
