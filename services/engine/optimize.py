"""Fused copies of BERT-family graphs (attention, LayerNorm, GELU) made by onnxruntime's transformer
optimizer, cached by content.

A registry version is immutable and checksummed, so the optimized graph is never written into it:
it lives in a cache folder under a name derived from the source graph's sha256, the onnxruntime
version and the target (CPU or GPU), with a sidecar recording its own sha256. A cached copy whose
digest does not match is rebuilt, never loaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import onnxruntime as ort

log = logging.getLogger(__name__)

CHUNK = 1 << 20


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "feedrank" / "graphs"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def optimized_graph(source: Path, cache_dir: Path, *, use_gpu: bool) -> tuple[Path, dict[str, int]]:
    """The fused copy of `source` (made now or found in the cache) and its fused-operator counts."""
    key = f"{sha256_file(source)[:32]}-ort{ort.__version__}-{'gpu' if use_gpu else 'cpu'}"
    target, sidecar = cache_dir / f"{key}.onnx", cache_dir / f"{key}.json"
    if target.is_file() and sidecar.is_file():
        recorded = json.loads(sidecar.read_text())
        if recorded.get("sha256") == sha256_file(target):
            return target, recorded.get("fused", {})
        log.warning("cached optimized graph %s does not match its digest; rebuilding", target)
    fused = _optimize(source, target, use_gpu)
    _write_atomic(sidecar, json.dumps({"source": str(source), "sha256": sha256_file(target), "fused": fused}).encode())
    return target, fused


def _optimize(source: Path, target: Path, use_gpu: bool) -> dict[str, int]:
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    heads, hidden = _shape(source.parent)
    # opt_level=0: only the Python fusions here; onnxruntime applies its own graph passes when the
    # session loads, so the cached file stays valid for any session option.
    model = optimize_model(
        str(source), model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=0,
        optimization_options=FusionOptions("bert"), use_gpu=use_gpu,
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    model.save_model_to_file(str(tmp))
    os.replace(tmp, target)
    return {k: int(v) for k, v in model.get_fused_operator_statistics().items() if v}


def _shape(folder: Path) -> tuple[int, int]:
    """Attention heads and hidden size from the version's config.json; 0 lets the optimizer read the graph."""
    config = folder / "config.json"
    if not config.is_file():
        return 0, 0
    data = json.loads(config.read_text())
    return int(data.get("num_attention_heads", 0)), int(data.get("hidden_size", 0))


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
