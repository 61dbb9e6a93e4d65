"""What the retriever needs from a vector store (cosine similarity over unit vectors)."""

from __future__ import annotations

import uuid
from typing import Protocol

import numpy as np

Hits = list[tuple[str, float]]  # (doc_id, cosine), best first

# Qdrant point ids must be integers or UUIDs; doc ids are free text (`auth/oauth.py:45-67`),
# so each becomes a deterministic UUID and the doc id rides along in the payload.
_NAMESPACE = uuid.UUID("6f1c3f1e-5d1b-4d0e-9d6a-8f5b2f7c0a11")


def point_id(doc_id: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, doc_id))


class VectorIndex(Protocol):
    def upsert(self, ids: list[str], vectors: np.ndarray) -> None:
        """Add or replace vectors (the doc id is the key)."""

    def delete(self, ids: list[str]) -> None: ...

    def commit(self) -> None:
        """Make every write so far durable."""

    def optimize(self) -> None:
        """After a bulk load: build whatever index structure makes queries fast."""

    def search(self, vector: np.ndarray, k: int) -> Hits: ...

    def vectors(self, ids: list[str]) -> dict[str, np.ndarray]:
        """The stored vectors of these documents (missing ids are left out)."""

    def count(self) -> int: ...

    def drop(self) -> None: ...

    def close(self) -> None: ...
