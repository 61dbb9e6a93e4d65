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
from services.common.errors import invalid
from services.engine.manifest import Manifest
from services.engine.pooling import adapt_queries, mean_pool_normalize
from services.engine.session import OnnxModel, load_model
from services.engine.tokenize import TextTokenizer, pad


class Scorer(abc.ABC):
    """prepare (tokenize, any thread) -> score (one padded batch, the inference thread)."""

    version_id: str
    max_length: int
    accepts_leg_vectors: bool = False  # a document sent with its dense-leg vector is scored by that vector

    @abc.abstractmethod
    def prepare(self, query: str, texts: list[str], vectors: list[np.ndarray | None] | None = None) -> list:
        """One work item per text; each has `.ids` (its tokens), which the batcher sorts by.

        `vectors` are the documents' dense-leg vectors when the caller has them; scorers that
        cannot use them ignore them.
        """

    @abc.abstractmethod
    def pair_lengths(self, query: str, texts: list[str]) -> list[int]:
        """Token counts before truncation."""

    @abc.abstractmethod
    def score(self, items: list) -> np.ndarray: ...

    @abc.abstractmethod
    def document_heads(self, texts: list[str], max_tokens: int) -> list[str]:
        """Each document cut to its first `max_tokens` tokens of this version's document tokenizer."""

    @abc.abstractmethod
    def document_tokens(self, texts: list[str]) -> list[Encoding]:
        """Each document's untruncated tokens (no special tokens), with offsets and word ids."""

    @abc.abstractmethod
    def passage_room(self, query: str) -> int:
        """Document tokens that fit in one model input beside `query` (its tokens and the markers)."""

    def check_vectors(self, vectors: list[np.ndarray | None]) -> None:
        """Refuse a request's unusable vectors, naming the document; scorers that ignore vectors accept any."""

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

    def prepare(self, query: str, texts: list[str], vectors=None) -> list[Encoding]:
        return self.tokenizer.encode_pairs(query, texts)

    def pair_lengths(self, query: str, texts: list[str]) -> list[int]:
        return self.tokenizer.pair_lengths(query, texts)

    def document_heads(self, texts: list[str], max_tokens: int) -> list[str]:
        return self.tokenizer.heads(texts, max_tokens)

    def document_tokens(self, texts: list[str]) -> list[Encoding]:
        return self.tokenizer.document_tokens(texts)

    def passage_room(self, query: str) -> int:
        return self.max_length - self.tokenizer.overhead(query)

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
    doc_vector: np.ndarray | None = None  # the dense leg's vector, when the version's doc tower is that embedder

    @property
    def ids(self) -> list[int]:
        return self.doc.ids


class OnnxBiEncoder(Scorer):
    """Cosine of query and document vectors: query.onnx for queries, doc.onnx (or query.onnx) for documents.

    A version may carry `adapter.npy`, a linear map W learned from feedback: queries become
    normalize(q + q W), documents stay as the dense leg indexed them. Document vectors come with the
    request when the retriever sends them (and the version's doc tower is the dense leg's embedder),
    else they are embedded here and cached by text digest (bounded LRU).
    """

    def __init__(self, folder: Path, manifest: Manifest, engine: EngineSettings):
        self.version_id = manifest.version_id
        self.max_length = engine.max_length or manifest.max_length
        self.query_model = load_model(folder, engine, "query")
        self.doc_model = load_model(folder, engine, "doc") if (folder / "doc.onnx").is_file() else self.query_model
        self.model = self.query_model
        self.query_tokenizer = TextTokenizer(folder, manifest.query_max_length)
        self.doc_tokenizer = TextTokenizer(folder, self.max_length)
        adapter = folder / "adapter.npy"
        self.adapter = np.load(adapter).astype(np.float32) if adapter.is_file() else None
        self.accepts_leg_vectors = manifest.doc_tower_is_dense_leg
        self._vectors: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._capacity = engine.doc_vector_cache
        self._lock = threading.Lock()
        # The document vectors' size, which a request's vectors must have.
        self.dimension = int(self._embed(self.doc_model, self.doc_tokenizer.encode_texts(["probe"])).shape[1])

    def prepare(self, query: str, texts: list[str], vectors=None) -> list[BiEncoderItem]:
        q = self.query_tokenizer.encode_texts([query])[0]
        given = vectors if (vectors is not None and self.accepts_leg_vectors) else [None] * len(texts)
        self.check_vectors(given)
        docs = self.doc_tokenizer.encode_texts([t for t, v in zip(texts, given) if v is None])
        encoded = iter(docs)
        items = []
        for text, vector in zip(texts, given):
            # A document that arrives with its vector needs no tokens: an empty encoding stands in.
            doc = next(encoded) if vector is None else _EMPTY
            items.append(BiEncoderItem(q, doc, hashlib.blake2b(text.encode(), digest_size=16).digest(), vector))
        return items

    def check_vectors(self, vectors: list[np.ndarray | None]) -> None:
        """A request's vectors are checked in its own request: in a batch one would fail every caller."""
        if not self.accepts_leg_vectors:
            return
        for index, vector in enumerate(vectors):
            if vector is None:
                continue
            if vector.shape != (self.dimension,):
                raise invalid(f"documents[{index}].embedding",
                              f"has {vector.size} values; version {self.version_id} takes {self.dimension}")
            if not np.isfinite(vector).all():
                raise invalid(f"documents[{index}].embedding", "must hold finite numbers only")

    def pair_lengths(self, query: str, texts: list[str]) -> list[int]:
        return [len(e.ids) for e in self.doc_tokenizer.encode_untruncated(texts)]

    def document_heads(self, texts: list[str], max_tokens: int) -> list[str]:
        return self.doc_tokenizer.heads(texts, max_tokens)

    def document_tokens(self, texts: list[str]) -> list[Encoding]:
        return self.doc_tokenizer.document_tokens(texts)

    def passage_room(self, query: str) -> int:
        return self.max_length - self.doc_tokenizer.overhead()  # the towers are apart: the query takes no room

    def score(self, items: list[BiEncoderItem]) -> np.ndarray:
        queries: dict[tuple[int, ...], int] = {}
        for item in items:
            queries.setdefault(tuple(item.query.ids), len(queries))
        unique = {tuple(i.query.ids): i.query for i in items}
        q_vectors = self._embed(self.query_model, [unique[k] for k in queries])
        if self.adapter is not None:
            q_vectors = adapt_queries(q_vectors, self.adapter)
        d_vectors = self._doc_vectors(items)
        rows = np.array([queries[tuple(i.query.ids)] for i in items])
        return np.einsum("ij,ij->i", q_vectors[rows], d_vectors).astype(np.float32)

    def _doc_vectors(self, items: list[BiEncoderItem]) -> np.ndarray:
        """Each item's own request vector, else its text's embedding (cached by text digest). Vectors
        from a request are never shared with another item: requests in one batch stay apart."""
        out: list[np.ndarray | None] = [i.doc_vector for i in items]
        wanted = {i.doc_key: i.doc for i in items if i.doc_vector is None}
        with self._lock:
            known = {key: self._vectors[key] for key in wanted if key in self._vectors}
            for key in known:
                self._vectors.move_to_end(key)
        missing = {key: doc for key, doc in wanted.items() if key not in known}
        if missing:
            fresh = self._embed(self.doc_model, list(missing.values()))
            with self._lock:
                for key, vector in zip(missing, fresh):
                    known[key] = vector
                    if self._capacity:
                        self._vectors[key] = vector
                while len(self._vectors) > self._capacity:
                    self._vectors.popitem(last=False)
        return np.stack([v if v is not None else known[i.doc_key] for v, i in zip(out, items)])

    @staticmethod
    def _embed(model: OnnxModel, encodings: list[Encoding]) -> np.ndarray:
        batch = pad(encodings)
        return mean_pool_normalize(model.run(batch.feeds), batch.attention_mask)


_EMPTY = Encoding()


def load_scorer(folder: Path, manifest: Manifest, engine: EngineSettings) -> Scorer:
    kinds = {"cross-encoder": OnnxCrossEncoder, "bi-encoder": OnnxBiEncoder}
    if manifest.kind not in kinds:
        raise ValueError(f"version {manifest.version_id} has unknown kind {manifest.kind!r}")
    return kinds[manifest.kind](folder, manifest, engine)
