"""The local spool: an append-only, fsynced log of events Kafka has not acknowledged yet.

Layout in the spool folder:
- `feedback.spool`: records `[u32 length][u32 crc32][u16 key length][key][value]`, big-endian.
- `cursor`: the byte offset up to which records are known to be in Kafka, replaced atomically.

An append returns only after fsync, so an acknowledged event survives a crash. Records before
the cursor are done; the log is truncated to empty once the cursor reaches its end. A crash in the
middle of an append leaves a torn tail, which no caller was told about: opening the spool drops it.
The class is synchronous and thread-safe; the asyncio side calls it through `asyncio.to_thread`.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    LOG = "feedback.spool"
    CURSOR = "cursor"

    def __init__(self, directory: Path):
        self.directory = Path(directory)
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

    def _recover(self) -> None:
        size = os.fstat(self._fd).st_size
        cursor = int(self._cursor_path.read_text().strip() or 0) if self._cursor_path.exists() else 0
        if cursor > size:
            # The log was truncated after a full drain and the process died before the cursor
            # was reset: nothing is pending.
            cursor = 0
            self._write_cursor(0)
        count, valid_end = 0, cursor
        with open(self._log_path, "rb") as f:
            f.seek(cursor)
            while True:
                header = f.read(_HEADER.size)
                if len(header) < _HEADER.size:
                    break
                length, crc = _HEADER.unpack(header)
                if length > _MAX_RECORD:
                    break
                payload = f.read(length)
                if len(payload) < length or zlib.crc32(payload) != crc:
                    break
                count += 1
                valid_end += _HEADER.size + length
        if valid_end < size:
            log.warning("spool: dropping a torn tail left by a crash mid-append",
                        extra={"fields": {"bytes": size - valid_end, "path": str(self._log_path)}})
            os.ftruncate(self._fd, valid_end)
            os.fsync(self._fd)
        self._cursor, self._end, self._depth = cursor, valid_end, count

    def _write_cursor(self, position: int) -> None:
        tmp = self._cursor_path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            f.write(str(position))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._cursor_path)
        _fsync_dir(self.directory)

    def append(self, entries: Sequence[tuple[bytes, bytes]]) -> None:
        """Append (key, value) records and fsync; returns once they are durable."""
        if not entries:
            return
        data = b"".join(_encode(key, value) for key, value in entries)
        with self._lock:
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
            else:
                self._write_cursor(position)
                self._cursor = position
            self._depth -= len(entries)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
