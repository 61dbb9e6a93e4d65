"""Registry faults tests/registry and tests/reranker/test_hotswap.py leave out.

A version whose manifest.json is garbage, version ids that try to leave the registry root (through the
registry API and through Rerank's `model` field), and a disk that fills up while publishing or flipping
an alias: each must come back as a FeedrankError, never a crash, and leave the registry as it was.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile

import grpc
import pytest

from services.common.errors import ErrorKind, FeedrankError
from services.proto.feedrank.v1 import reranker_pb2, reranker_pb2_grpc
from services.registry.store import FileRegistry
from tests.conftest import ServiceProcess

FIELDS = {"kind": "cross-encoder", "base_model": "base", "max_length": 128, "activation": "sigmoid"}
TRAVERSALS = ["../evil", "..", "../../etc/passwd", "v1/../../x", "/etc/passwd", "a\\..\\b", "v1\x00", "ok..no"]


def _folder(tmp_path, name="m"):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"weights")
    (folder / "tokenizer.json").write_text("{}")
    return folder


@pytest.fixture
def registry(tmp_path) -> FileRegistry:
    return FileRegistry(tmp_path / "box" / "reg")


def _damage_manifest(registry: FileRegistry, version_id: str, text: str) -> None:
    (registry.root / "versions" / version_id / "manifest.json").write_text(text)


def _staging_left(registry: FileRegistry) -> list[str]:
    return [p.name for p in (registry.root / "versions").iterdir() if p.name.startswith(".")]


# -- garbage manifests --------------------------------------------------------------------------

@pytest.mark.parametrize("garbage", ['{"version_id": "x", "files": {', "not json at all", "{}", '{"kind": 1}'])
def test_a_garbage_manifest_is_refused_as_a_failed_precondition(registry, tmp_path, garbage):
    version = registry.publish(_folder(tmp_path), FIELDS).version_id
    _damage_manifest(registry, version, garbage)
    for call in (registry.manifest, registry.local_path, registry.resolve):
        with pytest.raises(FeedrankError) as err:
            call(version)
        assert err.value.kind is ErrorKind.FAILED_PRECONDITION, call
    with pytest.raises(FeedrankError):
        registry.set_alias("champion", version, "must not point at a damaged version")
    assert registry.aliases() == {}
    assert registry.versions() == []  # listed versions skip the damaged one


@pytest.mark.parametrize("garbage", ["[]", "null", "42"])
def test_a_manifest_that_is_not_an_object_is_refused(registry, tmp_path, garbage):
    version = registry.publish(_folder(tmp_path), FIELDS).version_id
    _damage_manifest(registry, version, garbage)
    with pytest.raises(FeedrankError) as err:
        registry.manifest(version)
    assert err.value.kind is ErrorKind.FAILED_PRECONDITION
    assert registry.versions() == []


def test_a_manifest_with_a_bad_files_table_is_refused(registry, tmp_path):
    version = registry.publish(_folder(tmp_path), FIELDS).version_id
    path = registry.root / "versions" / version / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "files": ["model.onnx"]}))
    with pytest.raises(FeedrankError) as err:
        registry.local_path(version)
    assert err.value.kind is ErrorKind.FAILED_PRECONDITION


# -- escaping the root --------------------------------------------------------------------------

@pytest.mark.parametrize("bad", TRAVERSALS)
def test_every_registry_entry_point_refuses_a_path_traversal(registry, tmp_path, bad):
    version = registry.publish(_folder(tmp_path), FIELDS).version_id
    registry.set_alias("champion", version, "start")
    calls = {
        "manifest": lambda: registry.manifest(bad),
        "local_path": lambda: registry.local_path(bad),
        "resolve": lambda: registry.resolve(bad),
        "set_alias": lambda: registry.set_alias("champion", bad, "escape"),
        "publish": lambda: registry.publish(_folder(tmp_path, f"p{len(os.listdir(tmp_path))}"),
                                            {**FIELDS, "version_id": bad}),
    }
    for name, call in calls.items():
        with pytest.raises(FeedrankError) as err:
            call()
        assert err.value.kind is ErrorKind.INVALID_ARGUMENT, name
    assert registry.aliases() == {"champion": version}
    assert sorted(p.name for p in (registry.root / "versions").iterdir()) == [version]
    # Nothing written beside the versions or beside the root.
    assert sorted(p.name for p in registry.root.iterdir()) == ["aliases.history.jsonl", "aliases.json", "versions"]
    assert [p.name for p in registry.root.parent.iterdir()] == ["reg"]


def test_a_version_folder_symlinked_outside_the_root_is_refused(registry, tmp_path):
    outside = _folder(tmp_path, "outside")
    (outside / "manifest.json").write_text(json.dumps({**FIELDS, "version_id": "vlink", "files": {},
                                                       "created_at": "2026-01-01T00:00:00Z"}))
    (registry.root / "versions" / "vlink").symlink_to(outside, target_is_directory=True)
    with pytest.raises(FeedrankError) as err:
        registry.local_path("vlink")
    assert err.value.kind is ErrorKind.INVALID_ARGUMENT


@pytest.fixture(scope="module")
def reranker(tmp_path_factory):
    """A reranker in learning mode over a registry with two garbage versions and no champion."""
    tmp_path = tmp_path_factory.mktemp("reranker")
    registry = FileRegistry(tmp_path / "reg")
    for version_id, garbage in (("vbroken", "{ truncated"), ("vlist", "[]")):
        registry.publish(_folder(tmp_path, version_id), {**FIELDS, "version_id": version_id})
        _damage_manifest(registry, version_id, garbage)
    data = tmp_path / "data"
    data.mkdir()
    proc = ServiceProcess("reranker", data, {"FEEDRANK_REGISTRY__ROOT": str(registry.root),
                                             "FEEDRANK_LOG_LEVEL": "WARNING"}).start()
    channel = grpc.insecure_channel(proc.target)
    yield reranker_pb2_grpc.RerankerStub(channel)
    channel.close()
    proc.stop()


def _rerank(stub, model: str):
    return stub.Rerank(reranker_pb2.RerankRequest(query="q", model=model, documents=[
        reranker_pb2.RerankDocument(id="a", text="alpha"), reranker_pb2.RerankDocument(id="b", text="beta")]),
        timeout=30)


def test_rerank_refuses_traversal_and_broken_versions_and_keeps_serving(reranker):
    for bad in [*TRAVERSALS, "vbroken", "v-does-not-exist"]:
        with pytest.raises(grpc.RpcError) as err:
            _rerank(reranker, bad)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (bad, err.value.details())
        assert "model" in err.value.details()
    # No champion: the input order, answered by the same process that refused all of the above.
    assert _rerank(reranker, "").model_version == "none"


def test_rerank_refuses_a_version_whose_manifest_is_not_an_object(reranker):
    with pytest.raises(grpc.RpcError) as err:
        _rerank(reranker, "vlist")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert _rerank(reranker, "").model_version == "none"


# -- disk full ----------------------------------------------------------------------------------

def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("target", ["shutil.copy2", "os.replace", "os.rename", "os.fsync"])
def test_publish_on_a_full_disk_reports_unavailable_and_leaves_nothing(registry, tmp_path, monkeypatch, target):
    module, name = target.split(".")
    monkeypatch.setattr({"shutil": shutil, "os": os}[module], name, _enospc)
    with pytest.raises(FeedrankError) as err:
        registry.publish(_folder(tmp_path), FIELDS)
    assert err.value.kind is ErrorKind.UNAVAILABLE and "No space left" in str(err.value)
    monkeypatch.undo()
    assert list((registry.root / "versions").iterdir()) == []
    assert registry.versions() == []
    # Once there is room again the same folder publishes.
    assert registry.publish(tmp_path / "m", FIELDS).files


def test_publish_reports_a_full_disk_when_the_staging_folder_cannot_be_made(registry, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "mkdtemp", _enospc)
    with pytest.raises(FeedrankError) as err:
        registry.publish(_folder(tmp_path), FIELDS)
    assert err.value.kind is ErrorKind.UNAVAILABLE


def _two_versions(registry, tmp_path) -> tuple[str, str]:
    a = registry.publish(_folder(tmp_path, "a"), FIELDS).version_id
    b = registry.publish(_folder(tmp_path, "b"), FIELDS).version_id
    registry.set_alias("champion", a, "start")
    return a, b


@pytest.mark.parametrize("target", ["os.replace", "os.fsync"])
def test_set_alias_on_a_full_disk_reports_unavailable_and_keeps_the_aliases(registry, tmp_path, monkeypatch, target):
    a, b = _two_versions(registry, tmp_path)
    before = (registry.root / "aliases.json").read_text()
    monkeypatch.setattr(os, target.split(".")[1], _enospc)
    with pytest.raises(FeedrankError) as err:
        registry.set_alias("champion", b, "promote on a full disk")
    assert err.value.kind is ErrorKind.UNAVAILABLE
    monkeypatch.undo()
    assert (registry.root / "aliases.json").read_text() == before
    assert registry.aliases() == {"champion": a} and registry.resolve("champion") == a
    registry.set_alias("champion", b, "room again")
    assert registry.aliases() == {"champion": b}


def test_a_failed_alias_flip_leaves_no_temporary_file(registry, tmp_path, monkeypatch):
    _, b = _two_versions(registry, tmp_path)
    monkeypatch.setattr(os, "replace", _enospc)
    with pytest.raises(FeedrankError):
        registry.set_alias("champion", b, "promote on a full disk")
    monkeypatch.undo()
    assert sorted(p.name for p in registry.root.iterdir() if p.name.startswith(".")) == []


def test_a_failed_alias_flip_is_not_in_the_history(registry, tmp_path, monkeypatch):
    a, b = _two_versions(registry, tmp_path)
    monkeypatch.setattr(os, "replace", _enospc)
    with pytest.raises(FeedrankError):
        registry.set_alias("champion", b, "promote on a full disk")
    monkeypatch.undo()
    assert registry.history()[-1]["to"] == a
