"""The local spool: an append-only, fsynced log of events Kafka has not acknowledged yet.

Layout in the spool folder:
- `feedback.spool`: records `[u32 length][u32 crc32][u16 key length][key][value]`, big-endian.
- `cursor`: the byte offset up to which records are known to be in Kafka, replaced atomically.

An append returns only after fsync, so an acknowledged event survives a crash. Records before
the cursor are done; the log is truncated to empty once the cursor reaches its end. A crash in the
middle of an append leaves a torn tail, which no caller was told about: opening the spool drops it.

A bad record that readable records follow is not a torn tail but damage (a flipped bit, a bad
sector): those records were acknowledged, so opening the spool moves only the damaged bytes to
`quarantine/` (named by their byte position, logged, counted in an alert metric) and keeps every
record after them. The log may not grow past `max_bytes`: an append that would is refused with
RESOURCE_EXHAUSTED, so the caller is never told an event is safe that the disk did not take.
The class is synchronous and thread-safe; the asyncio side calls it through `asyncio.to_thread`.
"""

from __future__ import annotations

import logging
import mmap
import os
import struct
import threading
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import Counter, Gauge

from services.common.durable import fsync_dir
from services.common.errors import ErrorKind, FeedrankError

log = logging.getLogger(__name__)

SPOOL_BYTES = Gauge("feedrank_feedback_spool_bytes", "Size of the spool log on disk")
SPOOL_QUARANTINED = Counter(
    "feedrank_feedback_spool_quarantined_total",
    "Damaged spool regions moved to quarantine at start (alert: acknowledged events may be lost)",
)
SPOOL_QUARANTINED_BYTES = Counter("feedrank_feedback_spool_quarantined_bytes_total", "Bytes moved to quarantine")

_HEADER = struct.Struct(">II")
_KEY_LEN = struct.Struct(">H")
# A record longer than this is corruption, not data (events are capped far below it).
_MAX_RECORD = 64 * 1024 * 1024


@dataclass(frozen=True)
class SpoolEntry:
    key: bytes
    value: bytes
    end: int  # byte offset just past this record: commit(end) marks it and everything before it done


def _encode(key: bytes, value: bytes) -> bytes:
    payload = _KEY_LEN.pack(len(key)) + key + value
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def _record_at(data: bytes, position: int) -> int | None:
    """The end of the intact record starting at `position`, or None."""
    if position + _HEADER.size > len(data):
        return None
    length, crc = _HEADER.unpack_from(data, position)
    end = position + _HEADER.size + length
    if length < _KEY_LEN.size or length > _MAX_RECORD or end > len(data):
        return None
    return end if zlib.crc32(data[position + _HEADER.size:end]) == crc else None


def _is_torn(data: bytes, position: int) -> bool:
    """Whether the bad record at `position` is cut short by the end of the file (an append a crash
    interrupted) rather than complete but damaged."""
    if position + _HEADER.size > len(data):
        return True
    (length,) = struct.unpack_from(">I", data, position)
    return length <= _MAX_RECORD and position + _HEADER.size + length > len(data)


def _resync(data: bytes, position: int) -> int | None:
    """The first offset after the bad record at `position` where an intact record starts, or None.

    The damaged record's own length is tried first (damage in the payload leaves it right), then
    every later byte: a random match of length and crc32 is about 2^-32 per offset."""
    length = struct.unpack_from(">I", data, position)[0] if position + 4 <= len(data) else 0
    guess = position + _HEADER.size + length
    if length <= _MAX_RECORD and _record_at(data, guess) is not None:
        return guess
    for offset in range(position + 1, len(data) - _HEADER.size + 1):
        if _record_at(data, offset) is not None:
            return offset
    return None



class Spool:
    LOG = "feedback.spool"
    CURSOR = "cursor"
    QUARANTINE = "quarantine"

    def __init__(self, directory: Path, max_bytes: int = 0):
        self.directory = Path(directory)
        self.max_bytes = max_bytes  # 0 = unbounded
        self.directory.mkdir(parents=True, exist_ok=True)
        self._log_path = self.directory / self.LOG
        self._cursor_path = self.directory / self.CURSOR
        self._lock = threading.Lock()
        self._fd = os.open(self._log_path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        self._cursor = 0
        self._end = 0
        self._depth = 0
        self._recover()

    @property
    def depth(self) -> int:
        """Events waiting for Kafka."""
        return self._depth

    @property
    def size_bytes(self) -> int:
        """Bytes of the log on disk (done records stay until the log is fully drained)."""
        return self._end

    def _recover(self) -> None:
        cursor = int(self._cursor_path.read_text().strip() or 0) if self._cursor_path.exists() else 0
        size = os.fstat(self._fd).st_size
        # Mapped, not read: the spool may be far larger than the service's memory.
        data = mmap.mmap(self._fd, size, access=mmap.ACCESS_READ) if size else b""
        try:
            self._scan(data, cursor)
        finally:
            if size:
                data.close()
        SPOOL_BYTES.set(self._end)

    def _scan(self, data, cursor: int) -> None:
        if cursor > len(data):
            # The log was truncated after a full drain and the process died before the cursor
            # was reset: nothing is pending.
            cursor = 0
            self._write_cursor(0)
        kept: list[tuple[int, int]] = []  # (start, end) of intact records after the cursor
        damaged: list[tuple[int, int]] = []
        position = cursor
        while position < len(data):
            end = _record_at(data, position)
            if end is not None:
                kept.append((position, end))
                position = end
                continue
            following = _resync(data, position)
            if following is None and _is_torn(data, position):
                log.warning("spool: dropping a torn tail left by a crash mid-append", extra={"fields": {
                    "bytes": len(data) - position, "position": position, "path": str(self._log_path)}})
                break
            damaged.append((position, following if following is not None else len(data)))
            position = damaged[-1][1]
        valid_end = kept[-1][1] if kept else cursor
        if damaged:
            self._quarantine(data, damaged)
            # The log becomes the done prefix (so the cursor keeps its meaning whichever file a
            # crash leaves behind) followed by every intact pending record.
            valid_end = self._replace_log(data, [(0, cursor), *kept])
        elif valid_end < len(data):
            os.ftruncate(self._fd, valid_end)
            os.fsync(self._fd)
        self._cursor, self._end, self._depth = cursor, valid_end, len(kept)

    def _quarantine(self, data: bytes, damaged: list[tuple[int, int]]) -> None:
        folder = self.directory / self.QUARANTINE
        folder.mkdir(exist_ok=True)
        for start, end in damaged:
            # Positions repeat after a rebuild, so the name carries the time as well.
            path = folder / f"{self.LOG}.{time.time_ns()}.at-{start}.bad"
            with open(path, "wb") as f:
                f.write(data[start:end])
                f.flush()
                os.fsync(f.fileno())
            SPOOL_QUARANTINED.inc()
            SPOOL_QUARANTINED_BYTES.inc(end - start)
            log.error("spool: a damaged record was quarantined; the records after it are kept", extra={"fields": {
                "position": start, "bytes": end - start, "log": str(self._log_path), "quarantine": str(path)}})
        fsync_dir(folder)

    def _replace_log(self, data, ranges: list[tuple[int, int]]) -> int:
        """Atomically replace the log by the byte `ranges` of `data`; returns the new size."""
        tmp = self._log_path.with_suffix(".rebuild")
        with open(tmp, "wb") as f:
            for start, end in ranges:
                f.write(data[start:end])
            f.flush()
            os.fsync(f.fileno())
            size = f.tell()
        os.replace(tmp, self._log_path)
        fsync_dir(self.directory)
        os.close(self._fd)
        self._fd = os.open(self._log_path, os.O_RDWR | os.O_APPEND)
        return size

    def _write_cursor(self, position: int) -> None:
        tmp = self._cursor_path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            f.write(str(position))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._cursor_path)
        fsync_dir(self.directory)

    def append(self, entries: Sequence[tuple[bytes, bytes]]) -> None:
        """Append (key, value) records and fsync; returns once they are durable."""
        if not entries:
            return
        data = b"".join(_encode(key, value) for key, value in entries)
        with self._lock:
            if self.max_bytes and self._end + len(data) > self.max_bytes:
                raise FeedrankError(ErrorKind.RESOURCE_EXHAUSTED, (
                    f"the feedback spool is full ({self._end} of {self.max_bytes} bytes, feedback.spool_max_bytes) "
                    "while Kafka is not acknowledging; retry once the broker is back and the spool drains"))
            try:
                written = 0
                while written < len(data):
                    written += os.write(self._fd, data[written:])
                os.fsync(self._fd)
            except OSError:
                # Leave no half-written records behind: nothing of this append was acknowledged.
                os.ftruncate(self._fd, self._end)
                raise
            self._end += len(data)
            self._depth += len(entries)
            SPOOL_BYTES.set(self._end)

    def peek(self, max_entries: int) -> list[SpoolEntry]:
        """Up to `max_entries` of the oldest pending records, in append order."""
        out: list[SpoolEntry] = []
        with self._lock:
            position, end = self._cursor, self._end
            if position >= end:
                return out
            with open(self._log_path, "rb") as f:
                f.seek(position)
                while position < end and len(out) < max_entries:
                    length, _crc = _HEADER.unpack(f.read(_HEADER.size))
                    payload = f.read(length)
                    (key_len,) = _KEY_LEN.unpack_from(payload)
                    position += _HEADER.size + length
                    key = payload[_KEY_LEN.size:_KEY_LEN.size + key_len]
                    out.append(SpoolEntry(key, payload[_KEY_LEN.size + key_len:], position))
        return out

    def commit(self, entries: Sequence[SpoolEntry]) -> None:
        """Mark `entries` (a prefix of what `peek` returned) as in Kafka."""
        if not entries:
            return
        position = entries[-1].end
        with self._lock:
            if position <= self._cursor:
                return
            if position == self._end:
                # Fully drained: truncate first, then reset the cursor (see _recover for a crash between).
                os.ftruncate(self._fd, 0)
                os.fsync(self._fd)
                self._write_cursor(0)
                self._cursor = self._end = 0
                SPOOL_BYTES.set(0)
            else:
                self._write_cursor(position)
                self._cursor = position
            self._depth -= len(entries)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
