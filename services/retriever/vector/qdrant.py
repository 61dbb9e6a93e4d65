"""Vectors on a Qdrant server (or qdrant-client's local mode) through qdrant-client."""

from __future__ import annotations

import numpy as np
from qdrant_client import QdrantClient, models

from services.common.config import RetrievalSettings
from services.retriever.vector.base import Hits, point_id

_UPSERT_BATCH = 256


def connect(settings: RetrievalSettings) -> QdrantClient:
    """A client for retrieval.qdrant_url that sends retrieval.qdrant_api_key (the `api-key` header) when set."""
    return QdrantClient(url=settings.qdrant_url, api_key=settings.qdrant_api_key or None)


class QdrantIndex:
    def __init__(self, client: QdrantClient, collection: str, dimension: int):
        self._client = client
        self.collection = collection
        if not client.collection_exists(collection):
            client.create_collection(
                collection, vectors_config=models.VectorParams(size=dimension, distance=models.Distance.COSINE)
            )

    def upsert(self, ids: list[str], vectors: np.ndarray) -> None:
        for start in range(0, len(ids), _UPSERT_BATCH):
            points = [
                models.PointStruct(id=point_id(d), vector=v.tolist(), payload={"doc_id": d})
                for d, v in zip(ids[start : start + _UPSERT_BATCH], vectors[start : start + _UPSERT_BATCH])
            ]
            self._client.upsert(self.collection, points=points, wait=True)

    def delete(self, ids: list[str]) -> None:
        selector = models.PointIdsList(points=[point_id(d) for d in ids])
        self._client.delete(self.collection, points_selector=selector, wait=True)

    def commit(self) -> None:
        """Upserts wait for the server (wait=True), so there is nothing left to flush."""

    def optimize(self) -> None:
        """The server builds its HNSW index in the background."""

    def search(self, vector: np.ndarray, k: int) -> Hits:
        response = self._client.query_points(self.collection, query=vector.tolist(), limit=k, with_payload=True)
        return [(p.payload["doc_id"], float(p.score)) for p in response.points]

    def vectors(self, ids: list[str]) -> dict[str, np.ndarray]:
        records = self._client.retrieve(self.collection, [point_id(d) for d in ids], with_payload=True, with_vectors=True)
        return {r.payload["doc_id"]: np.asarray(r.vector, dtype=np.float32) for r in records}

    def count(self) -> int:
        return int(self._client.count(self.collection, exact=True).count)

    def drop(self) -> None:
        self._client.delete_collection(self.collection)

    def close(self) -> None:
        """The client is shared by every corpus; its owner closes it."""
