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


def _records(tmp_path) -> list[tuple[int, int]]:
    """(start, end) of each record in the log, read from the length fields."""
    data, out, position = (tmp_path / Spool.LOG).read_bytes(), [], 0
    while position < len(data):
        end = position + 8 + int.from_bytes(data[position:position + 4], "big")
        out.append((position, end))
        position = end
    return out


def _flip(tmp_path, offset: int) -> None:
    data = bytearray((tmp_path / Spool.LOG).read_bytes())
    data[offset] ^= 0x01
    (tmp_path / Spool.LOG).write_bytes(bytes(data))


def test_one_flipped_byte_in_the_first_record_quarantines_only_that_record(tmp_path):
    spool = Spool(tmp_path)
    spool.append(_entries(5))  # fsynced: all five were acknowledged
    spool.close()
    (start, end), *_ = _records(tmp_path)
    _flip(tmp_path, start + 12)  # a byte of record 0's payload
    reopened = Spool(tmp_path)
    assert reopened.depth == 4
    assert [(e.key, e.value) for e in reopened.peek(10)] == _entries(4, start=1)
    (quarantined,) = (tmp_path / Spool.QUARANTINE).iterdir()
    assert quarantined.name.endswith(f".at-{start}.bad")
    assert quarantined.stat().st_size == end - start
    # The rebuilt log keeps working: appends, commits and another reopen see the same records.
    reopened.append(_entries(1, start=9))
    reopened.commit(reopened.peek(2))
    reopened.close()
    assert [e.value for e in Spool(tmp_path).peek(10)] == [b"value-3", b"value-4", b"value-9"]


def test_a_damaged_length_field_in_the_middle_is_skipped_by_resync(tmp_path):
    spool = Spool(tmp_path)
    spool.append(_entries(5))
    spool.close()
    start, _ = _records(tmp_path)[2]
    _flip(tmp_path, start)  # the length's top byte: the record now claims 16 MiB more
    reopened = Spool(tmp_path)
    assert [e.value for e in reopened.peek(10)] == [b"value-0", b"value-1", b"value-3", b"value-4"]
    assert len(list((tmp_path / Spool.QUARANTINE).iterdir())) == 1


def test_damage_after_the_cursor_keeps_the_done_prefix_meaningful(tmp_path):
    spool = Spool(tmp_path)
    spool.append(_entries(5))
    spool.commit(spool.peek(2))  # two are in Kafka; the cursor points past them
    spool.close()
    start, _ = _records(tmp_path)[3]
    _flip(tmp_path, start + 12)
    reopened = Spool(tmp_path)
    assert [e.value for e in reopened.peek(10)] == [b"value-2", b"value-4"]
    reopened.close()
    assert [e.value for e in Spool(tmp_path).peek(10)] == [b"value-2", b"value-4"]


def test_quarantine_is_counted_for_alerting(tmp_path):
    from prometheus_client import REGISTRY

    def quarantined() -> float:
        return REGISTRY.get_sample_value("feedrank_feedback_spool_quarantined_total") or 0.0

    before = quarantined()
    spool = Spool(tmp_path)
    spool.append(_entries(3))
    spool.close()
    _flip(tmp_path, _records(tmp_path)[1][0] + 12)
    Spool(tmp_path).close()
    assert quarantined() == before + 1


def test_spool_refuses_past_its_cap_and_keeps_what_it_acknowledged(tmp_path):
    from services.common.errors import ErrorKind, FeedrankError

    one = len(b"".join([b"12345678", b"\x00\x02", b"k0", b"value-0"]))
    spool = Spool(tmp_path, max_bytes=3 * one)
    spool.append(_entries(3))
    try:
        spool.append(_entries(1, start=3))
    except FeedrankError as err:
        assert err.kind is ErrorKind.RESOURCE_EXHAUSTED
        assert "spool is full" in err.message
    else:
        raise AssertionError("an append past spool_max_bytes was accepted")
    assert spool.depth == 3 and spool.size_bytes == 3 * one
    spool.close()
    assert [e.value for e in Spool(tmp_path, max_bytes=3 * one).peek(10)] == [b"value-0", b"value-1", b"value-2"]
