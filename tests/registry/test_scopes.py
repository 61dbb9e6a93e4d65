"""Aliases per corpus: scoping rules, the cross-process lock, the migration of global aliases, staging sweep, ids."""

from __future__ import annotations

import json
import multiprocessing

import pytest

from services.common.errors import ErrorKind, FeedrankError
from services.common.ids import check_corpus_id, check_version_id
from services.registry.store import GLOBAL, FileRegistry, _flocked_dir, champion_lineage

FIELDS = {"kind": "cross-encoder", "base_model": "base", "max_length": 128, "activation": "sigmoid"}


def _publish(registry: FileRegistry, tmp_path, name: str, corpus_id: str = "") -> str:
    folder = tmp_path / f"src-{name}"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(name.encode())
    return registry.publish(folder, {**FIELDS, "version_id": name, "corpus_id": corpus_id}).version_id


def test_each_corpus_has_its_own_aliases_and_falls_back_to_the_global_scope_only(tmp_path):
    registry = FileRegistry(tmp_path / "reg")
    neutral = _publish(registry, tmp_path, "vneutral")
    va, vb = _publish(registry, tmp_path, "va", "alpha"), _publish(registry, tmp_path, "vb", "beta")
    registry.set_alias("champion", neutral, "imported", corpus_id=GLOBAL)
    registry.set_alias("champion", va, "promote", corpus_id="alpha", judge="labels")
    assert registry.resolve("champion", "alpha") == va
    assert registry.resolve("champion", "beta") == neutral  # no champion of its own: the corpus-neutral one
    registry.update_aliases("beta", {"champion": vb, "previous": None}, "promote", judge="labels")
    assert registry.resolve("champion", "alpha") == va and registry.resolve("champion", "beta") == vb
    assert registry.all_aliases() == {GLOBAL: {"champion": neutral}, "alpha": {"champion": va},
                                      "beta": {"champion": vb}}
    # Only what changed is recorded (beta had no previous champion to keep).
    assert [(h["alias"], h["to"], h["judge"]) for h in registry.history("beta")] == [("champion", vb, "labels")]
    # A corpus's version never becomes another corpus's alias, nor a global one.
    for scope in ("beta", GLOBAL):
        with pytest.raises(FeedrankError) as err:
            registry.set_alias("champion", va, "cross-corpus", corpus_id=scope)
        assert err.value.kind is ErrorKind.INVALID_ARGUMENT and err.value.field == "corpus_id"
    registry.set_alias("champion", None, "rolled back", corpus_id="alpha")
    assert registry.resolve("champion", "alpha") == neutral and registry.resolve("champion", "beta") == vb
    on_disk = json.loads((registry.root / "aliases.json").read_text())
    assert on_disk == {"format": 2, "global": {"champion": neutral}, "corpora": {"beta": {"champion": vb}}}


@pytest.mark.parametrize("bad", ["scifact\n", "a/b", "", "-x", "x" * 65, "a b"])
def test_corpus_ids_are_matched_whole(tmp_path, bad):
    with pytest.raises(FeedrankError) as err:
        check_corpus_id(bad)
    assert err.value.field == "corpus_id"
    registry = FileRegistry(tmp_path / "reg")
    if bad:  # "" is the global scope
        with pytest.raises(FeedrankError):
            registry.aliases(bad)


@pytest.mark.parametrize("bad", ["v1\n", "v1\nx", "v1\r", " v1"])
def test_version_ids_are_matched_whole(tmp_path, bad):
    with pytest.raises(FeedrankError) as err:
        check_version_id(bad, "model")
    assert err.value.field == "model"
    registry = FileRegistry(tmp_path / "reg")
    with pytest.raises(FeedrankError) as err:
        registry.resolve(bad)
    assert err.value.kind is ErrorKind.INVALID_ARGUMENT


def _writer(root: str, corpus_id: str, versions: list[str], rounds: int, start) -> None:
    registry = FileRegistry(root)
    start.wait()
    for i in range(rounds):
        registry.set_alias("champion", versions[i % len(versions)], f"round {i}", corpus_id=corpus_id)


def test_concurrent_writer_processes_lose_no_alias_update(tmp_path):
    """Each process flips its own corpus's champion; a read-modify-write without the lock loses some of them."""
    registry = FileRegistry(tmp_path / "reg")
    versions = [_publish(registry, tmp_path, f"v{i}") for i in range(3)]
    corpora, rounds = [f"c{i}" for i in range(6)], 40
    ctx = multiprocessing.get_context("fork")
    start = ctx.Barrier(len(corpora))
    procs = [ctx.Process(target=_writer, args=(str(registry.root), c, versions, rounds, start)) for c in corpora]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    final = versions[(rounds - 1) % len(versions)]
    assert registry.all_aliases() == {c: {"champion": final} for c in corpora}
    for c in corpora:  # every flip recorded, and each record's "from" is what the flip replaced
        history = registry.history(c)
        assert len(history) == rounds
        assert [h["from"] for h in history] == [None] + [h["to"] for h in history[:-1]]


def test_global_aliases_are_migrated_per_corpus_keeping_the_history(tmp_path):
    """The issue's case: beta's promotion took the one global champion from alpha. After migration beta keeps
    its version, alpha gets its own back, the corpus-neutral one stays the fallback, nothing of the history is lost."""
    registry = FileRegistry(tmp_path / "reg")
    neutral = _publish(registry, tmp_path, "vneutral")
    va, vb = _publish(registry, tmp_path, "va", "alpha"), _publish(registry, tmp_path, "vb", "beta")
    legacy_history = [
        {"at": "t1", "alias": "champion", "from": None, "to": neutral, "reason": "import"},
        {"at": "t2", "alias": "challenger", "from": None, "to": va, "reason": "run r1"},
        {"at": "t3", "alias": "champion", "from": neutral, "to": va, "reason": "promote (alpha): gain"},
        {"at": "t4", "alias": "challenger", "from": va, "to": vb, "reason": "run r2"},
        {"at": "t5", "alias": "champion", "from": va, "to": vb, "reason": "promote (beta): gain"},
    ]
    (registry.root / "aliases.json").write_text(json.dumps({"champion": vb, "challenger": vb}))
    history_text = "".join(json.dumps(r) + "\n" for r in legacy_history)
    (registry.root / "aliases.history.jsonl").write_text(history_text)

    migrated = FileRegistry(registry.root)
    assert migrated.all_aliases() == {GLOBAL: {"champion": neutral}, "alpha": {"champion": va},
                                      "beta": {"champion": vb, "challenger": vb}}
    assert json.loads((registry.root / "aliases.json").read_text())["format"] == 2
    text = (registry.root / "aliases.history.jsonl").read_text()
    assert text.startswith(history_text) and len(text.splitlines()) == len(legacy_history) + 1
    assert json.loads(text.splitlines()[-1])["judge"] == "migration"
    assert champion_lineage(migrated.history("alpha")) == [None, va]
    assert champion_lineage(migrated.history("beta")) == [None, vb]  # a rollback of beta goes to the fused order
    FileRegistry(registry.root)  # a second open changes nothing
    assert (registry.root / "aliases.history.jsonl").read_text() == text


def test_a_legacy_registry_is_read_per_corpus_where_it_cannot_be_migrated(tmp_path):
    registry = FileRegistry(tmp_path / "reg")
    vb = _publish(registry, tmp_path, "vb", "beta")
    (registry.root / "aliases.json").write_text(json.dumps({"champion": vb}))
    reader = FileRegistry.__new__(FileRegistry)  # a reader on a read-only mount: no migration ran
    reader.__dict__.update(registry.__dict__)
    assert reader.resolve("champion", "beta") == vb and reader.resolve("champion", "alpha") is None


def test_staging_left_by_a_crash_is_swept_and_a_live_one_kept(tmp_path):
    registry = FileRegistry(tmp_path / "reg")
    dead, live = registry.versions_dir / ".staging-dead", registry.versions_dir / ".staging-live"
    for folder in (dead, live):
        folder.mkdir()
        (folder / "model.onnx").write_bytes(b"half")
    with _flocked_dir(live):  # a publish in progress in another process holds its staging folder
        FileRegistry(registry.root)
        assert not dead.exists() and live.exists()
    FileRegistry(registry.root)
    assert not live.exists()
