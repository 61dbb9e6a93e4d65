"""What the retriever needs from a BM25 engine."""

from __future__ import annotations

from typing import Protocol

from services.common.documents import Doc

Hits = list[tuple[str, float]]  # (doc_id, score), best first


class LexicalIndex(Protocol):
    def upsert(self, docs: list[Doc]) -> None:
        """Add or replace documents (the doc id is the key)."""

    def delete(self, ids: list[str]) -> None: ...

    def commit(self) -> None:
        """Make every write so far durable and visible to search."""

    def search(self, query: str, k: int) -> Hits: ...

    def count(self) -> int: ...

    def drop(self) -> None:
        """Remove the whole index."""

    def close(self) -> None: ...
