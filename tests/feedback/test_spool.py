"""The spool: fsynced appends, in-order peeks, prefix commits, crash recovery."""

from __future__ import annotations

from services.feedback.spool import Spool


def _entries(n: int, start: int = 0) -> list[tuple[bytes, bytes]]:
    return [(f"k{i}".encode(), f"value-{i}".encode()) for i in range(start, start + n)]


def test_append_peek_commit_in_order(tmp_path):
    spool = Spool(tmp_path)
    spool.append(_entries(5))
    assert spool.depth == 5
    first = spool.peek(3)
    assert [(e.key, e.value) for e in first] == _entries(3)
    spool.commit(first[:2])
    assert spool.depth == 3
    assert [e.value for e in spool.peek(10)] == [b"value-2", b"value-3", b"value-4"]


def test_pending_entries_survive_reopen(tmp_path):
    spool = Spool(tmp_path)
    spool.append(_entries(4))
    spool.commit(spool.peek(1))
    spool.close()
    reopened = Spool(tmp_path)
    assert reopened.depth == 3
    assert [e.value for e in reopened.peek(10)] == [b"value-1", b"value-2", b"value-3"]


def test_full_drain_empties_the_log(tmp_path):
    spool = Spool(tmp_path)
    spool.append(_entries(3))
    spool.commit(spool.peek(10))
    assert spool.depth == 0
    assert (tmp_path / Spool.LOG).stat().st_size == 0
    spool.append(_entries(2, start=10))
    assert [e.value for e in spool.peek(10)] == [b"value-10", b"value-11"]


def test_torn_tail_from_a_crash_is_dropped(tmp_path):
    spool = Spool(tmp_path)
    spool.append(_entries(2))
    spool.close()
    with open(tmp_path / Spool.LOG, "ab") as f:
        f.write(b"\x00\x00\x00\x40\x12")  # a header cut short: the append never returned
    reopened = Spool(tmp_path)
    assert reopened.depth == 2
    reopened.append(_entries(1, start=5))
    assert [e.value for e in reopened.peek(10)] == [b"value-0", b"value-1", b"value-5"]


def test_corrupt_record_is_not_returned(tmp_path):
    spool = Spool(tmp_path)
    spool.append(_entries(3))
    spool.close()
    data = bytearray((tmp_path / Spool.LOG).read_bytes())
    data[-1] ^= 0xFF  # flip a byte of the last record: its crc no longer matches
    (tmp_path / Spool.LOG).write_bytes(bytes(data))
    assert [e.value for e in Spool(tmp_path).peek(10)] == [b"value-0", b"value-1"]


def test_stale_cursor_after_truncate_means_empty(tmp_path):
    spool = Spool(tmp_path)
    spool.close()
    (tmp_path / Spool.CURSOR).write_text("4096")  # died between truncate and cursor reset
    reopened = Spool(tmp_path)
    assert reopened.depth == 0
    reopened.append(_entries(1))
    assert reopened.depth == 1 and reopened.peek(1)[0].value == b"value-0"
