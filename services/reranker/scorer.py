"""Scorers: what the batcher runs. One interface, one file per runtime (ONNX here; cloud in cloud.py)."""

from __future__ import annotations

import abc
import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Encoding

from services.common.config import EngineSettings
from services.engine.pooling import mean_pool_normalize
from services.engine.session import OnnxModel, load_model
from services.engine.tokenize import TextTokenizer, pad
from services.registry.store import Manifest


class Scorer(abc.ABC):
    """prepare (tokenize, any thread) -> score (one padded batch, the inference thread)."""

    version_id: str
    max_length: int

    @abc.abstractmethod
    def prepare(self, query: str, texts: list[str]) -> list:
        """One work item per text; each has `.ids` (its tokens), which the batcher sorts by."""

    @abc.abstractmethod
    def pair_lengths(self, query: str, texts: list[str]) -> list[int]:
        """Token counts before truncation."""

    @abc.abstractmethod
    def score(self, items: list) -> np.ndarray: ...

    def warmup(self) -> float:
        """Score a smoke pair; a version that cannot is never swapped in."""
        value = float(self.score(self.prepare("smoke test query", ["a short smoke test document"]))[0])
        if not np.isfinite(value):
            raise ValueError(f"smoke score is {value}")
        return value


class OnnxCrossEncoder(Scorer):
    def __init__(self, folder: Path, manifest: Manifest, engine: EngineSettings):
        self.version_id = manifest.version_id
        self.max_length = engine.max_length or manifest.max_length
        self.activation = manifest.activation
        self.model: OnnxModel = load_model(folder, engine)
        self.tokenizer = TextTokenizer(folder, self.max_length)

    def prepare(self, query: str, texts: list[str]) -> list[Encoding]:
        return self.tokenizer.encode_pairs(query, texts)

    def pair_lengths(self, query: str, texts: list[str]) -> list[int]:
        return self.tokenizer.pair_lengths(query, texts)

    def score(self, encodings: list[Encoding]) -> np.ndarray:
        logits = self.model.run(pad(encodings).feeds).astype(np.float32).reshape(-1)
        if self.activation == "sigmoid":
            return 1.0 / (1.0 + np.exp(-logits))
        return logits


@dataclass(frozen=True)
class BiEncoderItem:
    query: Encoding
    doc: Encoding
    doc_key: bytes

    @property
    def ids(self) -> list[int]:
        return self.doc.ids


class OnnxBiEncoder(Scorer):
    """Cosine of query and document vectors: query.onnx for queries, doc.onnx (or query.onnx) for documents.

    Document vectors are cached by text digest (bounded LRU), so the candidates a popular query brings
    back are embedded once; the query tower costs one short sequence per request.
    """

    def __init__(self, folder: Path, manifest: Manifest, engine: EngineSettings):
        self.version_id = manifest.version_id
        self.max_length = engine.max_length or manifest.max_length
        self.query_model = load_model(folder, engine, "query")
        self.doc_model = load_model(folder, engine, "doc") if (folder / "doc.onnx").is_file() else self.query_model
        self.model = self.query_model
        self.query_tokenizer = TextTokenizer(folder, int(manifest.extra.get("query_max_length", 64)))
        self.doc_tokenizer = TextTokenizer(folder, self.max_length)
        self._vectors: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._capacity = engine.doc_vector_cache
        self._lock = threading.Lock()

    def prepare(self, query: str, texts: list[str]) -> list[BiEncoderItem]:
        q = self.query_tokenizer.encode_texts([query])[0]
        docs = self.doc_tokenizer.encode_texts(texts)
        return [BiEncoderItem(q, d, hashlib.blake2b(t.encode(), digest_size=16).digest()) for d, t in zip(docs, texts)]

    def pair_lengths(self, query: str, texts: list[str]) -> list[int]:
        return [len(e.ids) for e in self.doc_tokenizer.encode_untruncated(texts)]

    def score(self, items: list[BiEncoderItem]) -> np.ndarray:
        queries: dict[tuple[int, ...], int] = {}
        for item in items:
            queries.setdefault(tuple(item.query.ids), len(queries))
        unique = {tuple(i.query.ids): i.query for i in items}
        q_vectors = self._embed(self.query_model, [unique[k] for k in queries])
        d_vectors = self._doc_vectors(items)
        rows = np.array([queries[tuple(i.query.ids)] for i in items])
        return np.einsum("ij,ij->i", q_vectors[rows], d_vectors).astype(np.float32)

    def _doc_vectors(self, items: list[BiEncoderItem]) -> np.ndarray:
        with self._lock:
            known = {i.doc_key: self._vectors[i.doc_key] for i in items if i.doc_key in self._vectors}
            for key in known:
                self._vectors.move_to_end(key)
        missing = {i.doc_key: i.doc for i in items if i.doc_key not in known}
        if missing:
            fresh = self._embed(self.doc_model, list(missing.values()))
            with self._lock:
                for key, vector in zip(missing, fresh):
                    known[key] = vector
                    if self._capacity:
                        self._vectors[key] = vector
                while len(self._vectors) > self._capacity:
                    self._vectors.popitem(last=False)
        return np.stack([known[i.doc_key] for i in items])

    @staticmethod
    def _embed(model: OnnxModel, encodings: list[Encoding]) -> np.ndarray:
        batch = pad(encodings)
        return mean_pool_normalize(model.run(batch.feeds), batch.attention_mask)


def load_scorer(folder: Path, manifest: Manifest, engine: EngineSettings) -> Scorer:
    kinds = {"cross-encoder": OnnxCrossEncoder, "bi-encoder": OnnxBiEncoder}
    if manifest.kind not in kinds:
        raise ValueError(f"version {manifest.version_id} has unknown kind {manifest.kind!r}")
    return kinds[manifest.kind](folder, manifest, engine)
