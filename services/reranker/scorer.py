"""Scorers: what the batcher runs. One interface, one file per runtime (ONNX here; cloud in cloud.py)."""

from __future__ import annotations

import abc
from pathlib import Path

import numpy as np
from tokenizers import Encoding

from services.common.config import EngineSettings
from services.engine.session import OnnxModel, load_model
from services.engine.tokenize import TextTokenizer, pad
from services.registry.store import Manifest


class Scorer(abc.ABC):
    """prepare (tokenize, any thread) -> score (one padded batch, the inference thread)."""

    version_id: str
    max_length: int

    @abc.abstractmethod
    def prepare(self, query: str, texts: list[str]) -> list[Encoding]: ...

    @abc.abstractmethod
    def pair_lengths(self, query: str, texts: list[str]) -> list[int]:
        """Token counts before truncation."""

    @abc.abstractmethod
    def score(self, encodings: list[Encoding]) -> np.ndarray: ...

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
