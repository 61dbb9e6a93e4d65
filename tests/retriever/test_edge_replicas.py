"""Serving replicas on one data dir share the embedded vector shard (services/retriever/vector/edge.py).

qdrant-edge loads a shard in one process at a time; a read-only replica that finds it loaded serves a
private copy, writers and replicas exclude each other, and copies of killed replicas are cleaned up.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest

from services.common.errors import FeedrankError
from services.retriever.vector.edge import EdgeIndex
from tests.conftest import REPO

DIM = 8


@pytest.fixture
def shard(tmp_path):
    rng = np.random.default_rng(7)
    vecs = rng.normal(size=(30, DIM))
    vecs = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)
    ids = [f"d{i}" for i in range(30)]
    writer = EdgeIndex(tmp_path / "vectors", DIM)
    writer.upsert(ids, vecs)
    writer.commit()
    writer.optimize()
    writer.close()
    return tmp_path / "vectors", ids, vecs


def _in_child(path: Path, read_only: bool, query: list[float]) -> list[str]:
    """Open the shard in another process, search once; prints the top id or the error's kind and text."""
    code = textwrap.dedent(f"""
        from pathlib import Path
        import numpy as np
        from services.common.errors import FeedrankError
        from services.retriever.vector.edge import EdgeIndex
        try:
            idx = EdgeIndex(Path({str(path)!r}), {DIM}, read_only={read_only})
        except FeedrankError as err:
            print(err.kind.name, "|", err)
        else:
            print("OK", idx.search(np.array({query!r}, dtype=np.float32), 1)[0][0], idx._copy is not None)
            idx.close()
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_two_replicas_serve_one_shard_the_second_from_a_private_copy(shard):
    path, ids, vecs = shard
    first = EdgeIndex(path, DIM, read_only=True)
    try:
        assert first._copy is None  # the first replica loads the shard itself
        assert first.search(vecs[4], 1)[0][0] == ids[4]
        # Another process: the shard is loaded here, so it serves a copy, with the same answer.
        assert _in_child(path, True, vecs[4].tolist()) == ["OK", ids[4], "True"]
        second = EdgeIndex(path, DIM, read_only=True)  # the same in this process
        copy = second._copy
        assert copy is not None and copy.is_dir() and not copy.is_relative_to(path.parent)
        assert second.count() == len(ids) and second.search(vecs[9], 1)[0][0] == ids[9]
        second.close()
        assert not copy.parent.exists(), "close removes the private copy"
    finally:
        first.close()
    # With no replica left, the next one loads the shard itself again.
    assert _in_child(path, True, vecs[2].tolist()) == ["OK", ids[2], "False"]


def test_writers_and_serving_replicas_exclude_each_other(shard):
    path, ids, vecs = shard
    replica = EdgeIndex(path, DIM, read_only=True)
    try:
        kind, *message = _in_child(path, False, vecs[0].tolist())
        assert kind == "FAILED_PRECONDITION" and "open in another process" in " ".join(message)
    finally:
        replica.close()
    writer = EdgeIndex(path, DIM)
    try:
        kind, *message = _in_child(path, True, vecs[0].tolist())
        assert kind == "FAILED_PRECONDITION" and "being written by another process" in " ".join(message)
    finally:
        writer.close()


def test_a_read_only_replica_refuses_writes(shard):
    path, ids, vecs = shard
    replica = EdgeIndex(path, DIM, read_only=True)
    try:
        for write in (lambda: replica.upsert(ids[:1], vecs[:1]), lambda: replica.delete(ids[:1]), replica.optimize):
            with pytest.raises(FeedrankError, match="read-only"):
                write()
    finally:
        replica.close()
    with pytest.raises(FeedrankError, match="does not exist"):
        EdgeIndex(path.parent / "missing", DIM, read_only=True)


def test_the_copy_of_a_killed_replica_is_removed_by_the_next_copy(shard):
    path, ids, vecs = shard
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = Path(tempfile.mkdtemp(prefix=f"feedrank-shard-{int(dead.stdout)}-"))
    (orphan / "vectors").mkdir()
    first = EdgeIndex(path, DIM, read_only=True)
    second = EdgeIndex(path, DIM, read_only=True)
    try:
        assert second._copy is not None
        assert not orphan.exists()
    finally:
        second.close()
        first.close()
