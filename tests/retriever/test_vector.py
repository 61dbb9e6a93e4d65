"""One suite for both vector backends: embedded qdrant-edge and qdrant-client (`:memory:`)."""

from __future__ import annotations

import numpy as np
import pytest

from services.retriever.vector.base import point_id

DIM = 8


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def vectors():
    rng = np.random.default_rng(5)
    return [f"src/mod.py:{i}-{i + 9}" for i in range(40)], _unit(rng.normal(size=(40, DIM)))


@pytest.fixture(params=["edge", "qdrant"])
def index(request, tmp_path):
    if request.param == "edge":
        from services.retriever.vector.edge import EdgeIndex

        idx = EdgeIndex(tmp_path / "vectors", DIM)
    else:
        from qdrant_client import QdrantClient

        from services.retriever.vector.qdrant import QdrantIndex

        idx = QdrantIndex(QdrantClient(":memory:"), "feedrank-test", DIM)
    yield idx
    idx.drop()


def test_nearest_neighbours_by_cosine(index, vectors):
    ids, vecs = vectors
    index.upsert(ids, vecs)
    index.commit()
    index.optimize()
    assert index.count() == len(ids)
    query = vecs[7]
    hits = index.search(query, 5)
    assert hits[0][0] == ids[7]
    assert hits[0][1] == pytest.approx(1.0, abs=1e-5)
    expected = [ids[i] for i in np.argsort(-(vecs @ query))[:5]]
    assert [d for d, _ in hits] == expected


def test_upsert_replaces_and_delete_removes(index, vectors):
    ids, vecs = vectors
    index.upsert(ids, vecs)
    index.upsert(ids[:3], vecs[:3])
    index.commit()
    assert index.count() == len(ids)
    index.upsert([ids[0]], vecs[[20]])  # doc 0 now points where doc 20 does
    index.delete([ids[20], "never-indexed"])
    index.commit()
    assert index.count() == len(ids) - 1
    assert index.search(vecs[20], 1)[0][0] == ids[0]


def test_stored_vectors_come_back_by_doc_id(index, vectors):
    ids, vecs = vectors
    index.upsert(ids, vecs)
    index.commit()
    got = index.vectors([ids[3], ids[11], "never-indexed"])
    assert set(got) == {ids[3], ids[11]}
    np.testing.assert_allclose(got[ids[11]], vecs[11], atol=1e-6)


def test_doc_ids_map_to_stable_uuids():
    assert point_id("auth/oauth.py:45-67") == point_id("auth/oauth.py:45-67")
    assert point_id("a") != point_id("b")


def test_edge_shard_persists(tmp_path, vectors):
    from services.retriever.vector.edge import EdgeIndex

    ids, vecs = vectors
    idx = EdgeIndex(tmp_path / "shard", DIM)
    idx.upsert(ids, vecs)
    idx.commit()
    idx.close()
    reopened = EdgeIndex(tmp_path / "shard", DIM)
    assert reopened.count() == len(ids)
    assert reopened.search(vecs[3], 1)[0][0] == ids[3]
    reopened.close()


def test_edge_shard_held_by_another_process_is_a_clear_error(tmp_path, vectors):
    import subprocess
    import sys
    import textwrap

    from services.retriever.vector.edge import EdgeIndex
    from tests.retriever.conftest import REPO

    ids, vecs = vectors
    idx = EdgeIndex(tmp_path / "shard", DIM)
    idx.upsert(ids, vecs)
    idx.commit()
    code = textwrap.dedent(
        f"""
        from pathlib import Path
        from services.common.errors import FeedrankError
        from services.retriever.vector.edge import EdgeIndex
        try:
            EdgeIndex(Path({str(tmp_path / "shard")!r}), {DIM})
        except FeedrankError as err:
            print(err.kind.name, "another process" in str(err))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    idx.close()
    assert out.stdout.split() == ["FAILED_PRECONDITION", "True"], out.stderr


def test_doc_store_keeps_a_copy_of_each_vector(tmp_path):
    from services.common.documents import Doc
    from services.retriever.corpus import DocStore

    store = DocStore(tmp_path / "docs.sqlite")
    vecs = np.eye(3, dtype=np.float32)
    store.upsert([Doc("b", "t", "x"), Doc("a", "t", "y"), Doc("c", "t", "z")], vecs)
    store.upsert([Doc("d", "t", "w")])  # no vector known (e.g. written by an older ingest)
    ids, matrix = store.vectors()
    assert ids == ["a", "b", "c"]
    np.testing.assert_allclose(matrix, vecs[[1, 0, 2]])
