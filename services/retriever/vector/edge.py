"""Embedded vectors on qdrant-edge: one on-disk shard per corpus (`corpora/<id>/vectors/`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import qdrant_edge as qe

from services.common.errors import ErrorKind, FeedrankError
from services.retriever.vector.base import Hits, point_id


class EdgeIndex:
    def __init__(self, path: Path, dimension: int):
        self.path = path
        if path.is_dir() and any(path.iterdir()):
            try:
                self._shard = qe.EdgeShard.load(str(path))
            except Exception as err:  # qdrant-edge raises a bare Exception; a held WAL lock is the usual cause
                if "WouldBlock" in str(err):
                    raise FeedrankError(
                        ErrorKind.FAILED_PRECONDITION,
                        f"the vector shard {path} is open in another process (a running retriever?): stop it "
                        "first, or query the running one with `feedrank search --target host:port`",
                    ) from err
                raise
        else:
            config = qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=dimension, distance=qe.Distance.Cosine))
            self._shard = qe.EdgeShard.create(str(path), config)
        self._dirty = False

    def upsert(self, ids: list[str], vectors: np.ndarray) -> None:
        points = [qe.Point(point_id(d), v.tolist(), {"doc_id": d}) for d, v in zip(ids, vectors)]
        self._shard.update(qe.UpdateOperation.upsert_points(points))
        self._dirty = True

    def delete(self, ids: list[str]) -> None:
        self._shard.update(qe.UpdateOperation.delete_points([point_id(d) for d in ids]))
        self._dirty = True

    def commit(self) -> None:
        if self._dirty:
            self._shard.flush()
            self._dirty = False

    def optimize(self) -> None:
        # Building the HNSW graph once after a bulk load keeps queries fast.
        self._shard.optimize()
        self._shard.flush()

    def search(self, vector: np.ndarray, k: int) -> Hits:
        request = qe.QueryRequest(limit=k, query=qe.Query.Nearest(vector.tolist()), with_payload=True)
        return [(p.payload["doc_id"], float(p.score)) for p in self._shard.query(request)]

    def vectors(self, ids: list[str]) -> dict[str, np.ndarray]:
        records = self._shard.retrieve([point_id(d) for d in ids], True, True)
        return {r.payload["doc_id"]: np.asarray(r.vector, dtype=np.float32) for r in records}

    def count(self) -> int:
        return self._shard.count(qe.CountRequest(exact=True))

    def drop(self) -> None:
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)

    def close(self) -> None:
        if self._shard is not None:
            self._shard.close()
            self._shard = None
