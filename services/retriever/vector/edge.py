"""Embedded vectors on qdrant-edge: one on-disk shard per corpus (`corpora/<id>/vectors/`).

qdrant-edge lets one process at a time load a shard (it holds a lock on the shard's WAL), and loading
and closing rewrite some of the shard's files. Serving replicas on one data dir (`feedrank up` scaled
out, a Deployment on a shared volume) therefore open it with `read_only=True`:

- `vectors.lock` (next to the shard) orders writers and readers: a writer (ingest, offline tools) holds
  it exclusively for as long as it has the shard open, a serving replica holds it shared. Either one
  is refused with a clear error while the other kind holds it, so no replica ever reads a shard that
  is being written.
- `vectors.open.lock` serialises, among serving replicas, the moments that touch the shard's files:
  loading (which rewrites `edge_config.json` and segment flags), copying, closing.
- The first serving replica loads the shard itself. One that finds it loaded by another replica (the
  WAL lock) serves a private copy of it, made under both locks, so the copy is of a shard no process
  is writing. The copy lives under the temp dir and is removed on close; copies left by replicas that
  were killed are removed by the next replica that makes one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import qdrant_edge as qe

from services.common.errors import ErrorKind, FeedrankError
from services.retriever.vector.base import Hits, point_id

log = logging.getLogger(__name__)

_COPY_PREFIX = "feedrank-shard-"
_COPY_NAME = re.compile(rf"^{_COPY_PREFIX}(\d+)-")


class EdgeIndex:
    def __init__(self, path: Path, dimension: int, *, read_only: bool = False):
        self.path = path
        self.read_only = read_only
        self._shard: qe.EdgeShard | None = None
        self._copy: Path | None = None
        path.parent.mkdir(parents=True, exist_ok=True)
        self._role = _flock_or_none(_lock_path(path), fcntl.LOCK_SH if read_only else fcntl.LOCK_EX)
        if self._role is None:
            raise self._held_error()
        try:
            if read_only:
                self._shard = self._open_shared()
            else:
                self._shard = self._open_exclusive(dimension)
        except BaseException:
            os.close(self._role)
            raise
        self._dirty = False

    def _held_error(self, cause: str = "") -> FeedrankError:
        if self.read_only:
            what = (f"the vector shard {self.path} is being written by another process (an ingest?): "
                    "retry when it is done")
        else:
            what = (f"the vector shard {self.path} is open in another process (a running retriever?): stop it "
                    "first, or query the running one with `feedrank search --target host:port`")
        return FeedrankError(ErrorKind.FAILED_PRECONDITION, what + (f" ({cause})" if cause else ""))

    def _open_exclusive(self, dimension: int) -> qe.EdgeShard:
        if self.path.is_dir() and any(self.path.iterdir()):
            try:
                return qe.EdgeShard.load(str(self.path))
            except Exception as err:  # qdrant-edge raises a bare Exception; a held WAL lock is the usual cause
                if "WouldBlock" in str(err):
                    raise self._held_error() from err
                raise
        config = qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=dimension, distance=qe.Distance.Cosine))
        return qe.EdgeShard.create(str(self.path), config)

    def _open_shared(self) -> qe.EdgeShard:
        if not (self.path.is_dir() and any(self.path.iterdir())):
            raise FeedrankError(ErrorKind.FAILED_PRECONDITION,
                                f"the vector shard {self.path} does not exist: ingest the corpus first")
        with _flocked(_open_lock_path(self.path)):
            try:
                return qe.EdgeShard.load(str(self.path))
            except Exception as err:
                if "WouldBlock" not in str(err):
                    raise
            # Another serving replica has it loaded (writers are excluded by vectors.lock): serve a copy.
            self._copy = _private_copy(self.path)
        log.info("vector shard %s is loaded by another retriever; serving a private copy at %s",
                 self.path, self._copy)
        try:
            return qe.EdgeShard.load(str(self._copy))
        except BaseException:
            shutil.rmtree(self._copy.parent, ignore_errors=True)
            raise

    def _writable(self) -> None:
        if self.read_only:
            raise FeedrankError(ErrorKind.FAILED_PRECONDITION,
                                f"the vector shard {self.path} is open read-only (a serving retriever)")

    def upsert(self, ids: list[str], vectors: np.ndarray) -> None:
        self._writable()
        points = [qe.Point(point_id(d), v.tolist(), {"doc_id": d}) for d, v in zip(ids, vectors)]
        self._shard.update(qe.UpdateOperation.upsert_points(points))
        self._dirty = True

    def delete(self, ids: list[str]) -> None:
        self._writable()
        self._shard.update(qe.UpdateOperation.delete_points([point_id(d) for d in ids]))
        self._dirty = True

    def commit(self) -> None:
        if self._dirty:
            self._shard.flush()
            self._dirty = False

    def optimize(self) -> None:
        self._writable()
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
        self._writable()
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)

    def close(self) -> None:
        if self._shard is not None:
            if self.read_only and self._copy is None:
                with _flocked(_open_lock_path(self.path)):  # closing rewrites files a replica may be copying
                    self._shard.close()
            else:
                self._shard.close()
            self._shard = None
        if self._copy is not None:
            shutil.rmtree(self._copy.parent, ignore_errors=True)  # the private temp dir that holds the copy
            self._copy = None
        if self._role is not None:
            os.close(self._role)  # releases vectors.lock
            self._role = None


def _lock_path(shard: Path) -> Path:
    return shard.with_name(shard.name + ".lock")


def _open_lock_path(shard: Path) -> Path:
    return shard.with_name(shard.name + ".open.lock")


def _flock_or_none(path: Path, mode: int) -> int | None:
    """An fd holding flock `mode` on `path`, or None when another process holds a conflicting lock."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def _flocked(path: Path) -> Iterator[None]:
    """Exclusive flock on `path` for the block, waiting for it (held only for loads, copies and closes)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _private_copy(shard: Path) -> Path:
    _remove_orphan_copies()
    target = Path(tempfile.mkdtemp(prefix=f"{_COPY_PREFIX}{os.getpid()}-")) / shard.name
    try:
        # The WAL and payload pages are large sparse files: copy their data, not their holes.
        shutil.copytree(shard, target, copy_function=_copy_sparse)
    except BaseException:
        shutil.rmtree(target.parent, ignore_errors=True)
        raise
    return target


def _remove_orphan_copies() -> None:
    """Copies whose replica is gone (killed before it could remove its own)."""
    for entry in Path(tempfile.gettempdir()).glob(f"{_COPY_PREFIX}*"):
        match = _COPY_NAME.match(entry.name)
        if match and entry.is_dir() and not _alive(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _copy_sparse(src: str, dst: str) -> str:
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        size = os.fstat(fin.fileno()).st_size
        offset = 0
        try:
            while offset < size:
                try:
                    start = os.lseek(fin.fileno(), offset, os.SEEK_DATA)
                except OSError as err:
                    if err.errno == errno.ENXIO:  # only a hole from here to the end
                        break
                    raise
                end = os.lseek(fin.fileno(), start, os.SEEK_HOLE)
                fin.seek(start)
                fout.seek(start)
                remaining = end - start
                while remaining:
                    chunk = fin.read(min(remaining, 1 << 20))
                    if not chunk:
                        break
                    fout.write(chunk)
                    remaining -= len(chunk)
                offset = end
        except (AttributeError, OSError):  # no SEEK_DATA on this platform or file system: copy every byte
            fin.seek(0)
            fout.seek(0)
            fout.truncate(0)
            shutil.copyfileobj(fin, fout, 1 << 20)
        fout.truncate(size)
    return dst
