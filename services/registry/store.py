"""The model registry: immutable, checksummed versions and atomically flipped aliases, scoped per corpus.

Layout under the root (DESIGN.md):
  versions/<version_id>/   model.onnx, tokenizer files, manifest.json (sha256 of every file)
  aliases.json             {"format": 2, "corpora": {"<corpus>": {"champion": "<id>", ...}}, "global": {...}}
  aliases.history.jsonl    append-only record of every alias change (corpus, judge, reason)

Each corpus has its own champion, challenger and previous. The global scope holds only versions
trained for no corpus (an imported cross-encoder, say); it serves a corpus that has no such alias of
its own, so a corpus is served by its own version, a corpus-neutral one, or the fused order, never by
another corpus's version. Alias writes are serialized across processes by an flock on the history
file; readers never lock (aliases.json is replaced by rename). A registry written with one global
set of aliases is migrated on first open (see `_migrate`); its history is kept as written and each
old record is attributed to a corpus through its version's manifest.

`Registry` is the interface; `FileRegistry` keeps it on a local or ReadWriteMany volume.
"""

from __future__ import annotations

import abc
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from services.common.durable import fsync_dir, write_json_atomic
from services.common.errors import ErrorKind, FeedrankError, invalid, not_found
from services.common.ids import check_corpus_id, check_version_id
from services.engine.manifest import Manifest

log = logging.getLogger(__name__)

ALIASES = ("champion", "challenger", "previous")
GLOBAL = ""  # the scope of corpus-neutral versions, the fallback of every corpus
ROLLBACK_REASON = "rollback"
_FORMAT = 2

Scopes = dict[str, dict[str, str]]  # corpus id (GLOBAL for the global scope) -> alias -> version id


def check_alias(alias: str) -> None:
    if alias not in ALIASES:
        raise invalid("alias", f"must be one of {', '.join(ALIASES)}")


def check_scope(corpus_id: str, field_name: str = "corpus_id") -> str:
    """A corpus id, or GLOBAL ("")."""
    return corpus_id if corpus_id == GLOBAL else check_corpus_id(corpus_id, field_name)


def scope_name(corpus_id: str) -> str:
    return corpus_id or "global"


def pick(scopes: Scopes, corpus_id: str, alias: str) -> str | None:
    """The version an alias names for a corpus: the corpus's own, else the global scope's (corpus-neutral)."""
    own = scopes.get(corpus_id, {})
    if alias in own:
        return own[alias]
    return scopes.get(GLOBAL, {}).get(alias)


def champion_lineage(history: list[dict[str, Any]]) -> list[str | None]:
    """The champions of one scope's history in order, rollbacks undone (None = the fused order)."""
    stack: list[str | None] = [None]
    for record in history:
        if record.get("alias") != "champion":
            continue
        if str(record.get("reason", "")).startswith(ROLLBACK_REASON) and len(stack) > 1:
            stack.pop()
        else:
            stack.append(record.get("to"))
    return stack


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Registry(abc.ABC):
    @abc.abstractmethod
    def publish(self, folder: Path, manifest_fields: dict[str, Any]) -> Manifest:
        """Copy a model folder in as a new immutable version (checksums computed here)."""

    @abc.abstractmethod
    def manifest(self, version_id: str) -> Manifest: ...

    @abc.abstractmethod
    def versions(self) -> list[Manifest]: ...

    @abc.abstractmethod
    def all_aliases(self) -> Scopes:
        """Every scope's aliases; GLOBAL is the global scope."""

    @abc.abstractmethod
    def update_aliases(self, corpus_id: str, changes: dict[str, str | None], reason: str, judge: str = "") -> None:
        """Point aliases of one scope at versions (None removes one), all at once, recording history."""

    @abc.abstractmethod
    def note(self, corpus_id: str, version_id: str, reason: str, *, judge: str, numbers: dict[str, Any]) -> None:
        """Keep a verdict on a version that changes no alias in the history (alias None: no lineage reads it)."""

    @abc.abstractmethod
    def history(self, corpus_id: str | None = None) -> list[dict[str, Any]]:
        """Alias changes (and noted verdicts) in order: one scope's (GLOBAL included) or, with None, every scope's."""

    @abc.abstractmethod
    def local_path(self, version_id: str) -> Path:
        """A local folder holding the version's files, checksums verified."""

    def aliases(self, corpus_id: str = GLOBAL) -> dict[str, str]:
        """One scope's own aliases (no fallback to the global scope)."""
        return dict(self.all_aliases().get(check_scope(corpus_id), {}))

    def set_alias(self, alias: str, version_id: str | None, reason: str, *, corpus_id: str = GLOBAL,
                  judge: str = "") -> None:
        self.update_aliases(corpus_id, {alias: version_id}, reason, judge)

    def resolve(self, name: str, corpus_id: str = GLOBAL) -> str | None:
        """Alias (for this corpus, else the global scope's) or version id -> version id; None when the alias
        points nowhere (the fused order)."""
        if name in ALIASES:
            return pick(self.all_aliases(), check_scope(corpus_id), name)
        check_version_id(name, "model")
        self.manifest(name)
        return name

    def manifest_digest(self, version_id: str) -> str:
        data = json.dumps(self.manifest(version_id).to_json(), sort_keys=True).encode()
        return hashlib.sha256(data).hexdigest()

    def _check_target(self, corpus_id: str, version_id: str) -> None:
        """A version trained for a corpus serves that corpus only; a corpus-neutral one may serve any."""
        owner = self.manifest(version_id).corpus_id
        if owner and owner != corpus_id:
            raise invalid("corpus_id", f"version {version_id} was trained for corpus {owner!r}; it cannot be an "
                          f"alias of {scope_name(corpus_id)!r}")


class FileRegistry(Registry):
    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self.versions_dir = self.root / "versions"
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        self._aliases_file = self.root / "aliases.json"
        self._history_file = self.root / "aliases.history.jsonl"
        self._owners: dict[str, str] = {}  # version id -> its corpus (versions are immutable)
        # On a read-only mount (the retriever's) neither can run: readers interpret the old alias format as they read.
        try:
            self._sweep_staging()
        except OSError as err:
            log.info("registry %s: staging not swept here: %s", self.root, err)
        try:
            self._migrate()
        except (OSError, FeedrankError) as err:
            log.info("registry %s: aliases not migrated here: %s", self.root, err)

    def _version_dir(self, version_id: str) -> Path:
        path = (self.versions_dir / check_version_id(version_id)).resolve()
        if path.parent != self.versions_dir:
            raise invalid("version_id", "escapes the registry root")
        return path

    # -- versions ------------------------------------------------------------------------------

    def publish(self, folder: Path, manifest_fields: dict[str, Any]) -> Manifest:
        folder = Path(folder)
        version_id = manifest_fields.get("version_id") or new_version_id()
        target = self._version_dir(version_id)
        if manifest_fields.get("corpus_id"):
            check_corpus_id(manifest_fields["corpus_id"])
        if target.exists():
            raise FeedrankError(ErrorKind.FAILED_PRECONDITION, f"version {version_id} exists; versions are immutable")
        staging: Path | None = None
        renamed = False
        try:
            staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.versions_dir))
            with _flocked_dir(staging):  # held while writing: a sweep at another process's start skips it
                files: dict[str, str] = {}
                for src in sorted(p for p in folder.iterdir() if p.is_file() and p.name != "manifest.json"):
                    shutil.copy2(src, staging / src.name)
                    _fsync_file(staging / src.name)
                    files[src.name] = sha256_file(staging / src.name)
                manifest = Manifest.from_json(
                    {**manifest_fields, "version_id": version_id, "files": files, "created_at": _now()}
                )
                write_json_atomic(staging / "manifest.json", manifest.to_json())
                fsync_dir(staging)
                os.rename(staging, target)  # a reader sees the whole version or nothing
                renamed = True
                fsync_dir(self.versions_dir)  # the rename itself survives a power cut
        except OSError as err:
            if staging is not None:
                shutil.rmtree(target if renamed else staging, ignore_errors=True)
            raise FeedrankError(ErrorKind.UNAVAILABLE, f"registry write failed: {err}") from err
        return manifest

    def _sweep_staging(self) -> None:
        """Remove staging folders a crashed publish left; one that a live publish holds is locked and kept."""
        for path in self.versions_dir.glob(".staging-*"):
            try:
                with _flocked_dir(path, blocking=False):
                    shutil.rmtree(path)
                log.warning("removed %s, left by an interrupted publish", path.name)
            except BlockingIOError:
                continue
            except FileNotFoundError:
                continue

    def manifest(self, version_id: str) -> Manifest:
        path = self._version_dir(version_id) / "manifest.json"
        if not path.is_file():
            raise not_found(f"unknown model version {version_id!r}", "model")
        try:
            return Manifest.from_json(json.loads(path.read_text()))
        except (ValueError, TypeError) as err:
            raise FeedrankError(ErrorKind.FAILED_PRECONDITION, f"version {version_id}: bad manifest: {err}") from err

    def versions(self) -> list[Manifest]:
        out = []
        for path in sorted(self.versions_dir.iterdir()):
            if path.is_dir() and not path.name.startswith(".") and (path / "manifest.json").is_file():
                try:
                    out.append(self.manifest(path.name))
                except FeedrankError:
                    continue  # a damaged version is reported when someone tries to load it
        return sorted(out, key=lambda m: m.created_at)

    def local_path(self, version_id: str) -> Path:
        folder = self._version_dir(version_id)
        manifest = self.manifest(version_id)
        for name, expected in manifest.files.items():
            path = folder / name
            if not path.is_file():
                raise FeedrankError(ErrorKind.FAILED_PRECONDITION, f"version {version_id}: {name} is missing")
            if sha256_file(path) != expected:
                raise FeedrankError(ErrorKind.FAILED_PRECONDITION, f"version {version_id}: {name} fails its checksum")
        return folder

    # -- aliases -------------------------------------------------------------------------------

    def all_aliases(self) -> Scopes:
        data = self._read_aliases_file()
        if data is None:
            return {}
        return _scoped(data) if _is_scoped(data) else self._legacy_scopes(data)

    def update_aliases(self, corpus_id: str, changes: dict[str, str | None], reason: str, judge: str = "") -> None:
        check_scope(corpus_id)
        for alias, version_id in changes.items():
            check_alias(alias)
            if version_id is not None:
                self._check_target(corpus_id, version_id)
        with self._alias_lock():
            scopes = self.all_aliases()
            before = {scope: dict(aliases) for scope, aliases in scopes.items()}
            scope = scopes.setdefault(corpus_id, {})
            records = []
            for alias, version_id in changes.items():
                previous = scope.get(alias)
                if previous == version_id:
                    continue  # no record of a change that did not happen
                if version_id is None:
                    scope.pop(alias, None)
                else:
                    scope[alias] = version_id
                records.append({"at": _now(), "corpus_id": corpus_id, "alias": alias, "from": previous,
                                "to": version_id, "reason": reason, "judge": judge})
            self._commit(scopes, records, restore=lambda: self._write_aliases(before))

    def _commit(self, scopes: Scopes, records: list[dict[str, Any]], restore: Callable[[], None]) -> None:
        """Write the aliases, then their history; a flip the history does not record must not stand (`restore`
        puts the file back)."""
        try:
            self._write_aliases(scopes)
        except OSError as err:
            raise FeedrankError(ErrorKind.UNAVAILABLE, f"registry write failed: {err}") from err
        try:
            with self._history_file.open("a") as fh:
                fh.write("".join(json.dumps(r) + "\n" for r in records))
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as err:
            try:
                restore()
            except OSError:
                log.error("aliases.json changed but its history could not be written: %s", err)
            raise FeedrankError(ErrorKind.UNAVAILABLE, f"registry write failed: {err}") from err

    def note(self, corpus_id: str, version_id: str, reason: str, *, judge: str, numbers: dict[str, Any]) -> None:
        check_scope(corpus_id)
        record = {"at": _now(), "corpus_id": corpus_id, "alias": None, "from": version_id, "to": version_id,
                  "reason": reason, "judge": judge, "numbers": numbers}
        with self._alias_lock():
            try:
                with self._history_file.open("a") as fh:
                    fh.write(json.dumps(record) + "\n")
                    fh.flush()
                    os.fsync(fh.fileno())
            except OSError as err:
                raise FeedrankError(ErrorKind.UNAVAILABLE, f"registry write failed: {err}") from err

    def history(self, corpus_id: str | None = None) -> list[dict[str, Any]]:
        try:
            records = [json.loads(line) for line in self._history_file.read_text().splitlines() if line.strip()]
        except FileNotFoundError:
            return []
        if corpus_id is None:
            return records
        return [r for r in records if self._record_scope(r) == corpus_id]

    @contextlib.contextmanager
    def _alias_lock(self) -> Iterator[None]:
        """Serializes alias writers across processes (CLI import, bootstrap, the trainer): read-modify-write."""
        try:
            fh = self._history_file.open("a")
        except OSError as err:
            raise FeedrankError(ErrorKind.UNAVAILABLE, f"registry write failed: {err}") from err
        with fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _read_aliases_file(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self._aliases_file.read_text())
        except FileNotFoundError:
            return None
        if not isinstance(data, dict):
            raise FeedrankError(ErrorKind.FAILED_PRECONDITION, f"{self._aliases_file} is not a JSON object")
        return data

    def _write_aliases(self, scopes: Scopes) -> None:
        corpora = {c: dict(sorted(a.items())) for c, a in sorted(scopes.items()) if c != GLOBAL and a}
        write_json_atomic(self._aliases_file, {"format": _FORMAT, "global": scopes.get(GLOBAL, {}), "corpora": corpora})
        fsync_dir(self.root)

    # -- the one-time migration from global aliases --------------------------------------------

    def _owner(self, version_id: str | None) -> str:
        """The corpus a version was trained for (GLOBAL when none, or when its manifest is unreadable)."""
        if not version_id:
            return GLOBAL
        if version_id not in self._owners:
            try:
                self._owners[version_id] = self.manifest(version_id).corpus_id or GLOBAL
            except FeedrankError:
                return GLOBAL
        return self._owners[version_id]

    def _record_scope(self, record: dict[str, Any]) -> str:
        """A record's corpus; one written before scoping is attributed through its version's manifest: a
        rollback to the version it took the alias from, any other change to the version it set (or removed)."""
        if "corpus_id" in record:
            return record["corpus_id"]
        if str(record.get("reason", "")).startswith(ROLLBACK_REASON):
            return self._owner(record.get("from") or record.get("to"))
        return self._owner(record.get("to") or record.get("from"))

    def _legacy_scopes(self, flat: dict[str, Any]) -> Scopes:
        """Global aliases as scopes: each version goes to the corpus it was trained for. A corpus whose champion
        another corpus's promotion displaced gets it back: the last champion of its own history."""
        scopes: Scopes = {}
        for alias, version_id in flat.items():
            if alias in ALIASES and isinstance(version_id, str):
                scopes.setdefault(self._owner(version_id), {})[alias] = version_id
        by_scope: dict[str, list[dict[str, Any]]] = {}
        for record in self.history():
            by_scope.setdefault(self._record_scope(record), []).append(record)
        for scope, records in by_scope.items():
            last = champion_lineage(records)[-1]
            if "champion" not in scopes.get(scope, {}) and last is not None and self._version_exists(last):
                scopes.setdefault(scope, {})["champion"] = last
        return scopes

    def _version_exists(self, version_id: str) -> bool:
        try:
            self.manifest(version_id)
            return True
        except FeedrankError:
            return False

    def _migrate(self) -> None:
        if not self._aliases_file.is_file():
            return
        with self._alias_lock():
            data = self._read_aliases_file()
            if data is None or _is_scoped(data):
                return  # another process migrated it first
            scopes = self._legacy_scopes(data)
            moves = {f"{scope_name(scope)}/{alias}": version for scope, aliases in sorted(scopes.items())
                     for alias, version in sorted(aliases.items())}
            # One marker record (alias None: no lineage reads it); the old records stay as written.
            record = {"at": _now(), "corpus_id": GLOBAL, "alias": None, "from": data, "to": moves,
                      "reason": "migrated the global aliases to per-corpus scopes", "judge": "migration"}
            self._commit(scopes, [record], restore=lambda: write_json_atomic(self._aliases_file, data))
            log.warning("registry aliases migrated to per-corpus scopes", extra={"fields": {"aliases": moves}})


def new_version_id() -> str:
    return time.strftime("v%Y%m%d-%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


_GENERATED_VERSION_ID = re.compile(r"v\d{8}-\d{6}-[0-9a-f]{6}")


def is_generated_version_id(name: str) -> bool:
    """Whether `name` has the shape new_version_id() gives (other APIs' model names never do)."""
    return bool(_GENERATED_VERSION_ID.fullmatch(name))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())



def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)



@contextlib.contextmanager
def _flocked_dir(path: Path, blocking: bool = True) -> Iterator[None]:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        yield
    finally:
        os.close(fd)  # releases the lock


def _is_scoped(data: dict[str, Any]) -> bool:
    return data.get("format") == _FORMAT


def _scoped(data: dict[str, Any]) -> Scopes:
    scopes: Scopes = {GLOBAL: dict(data.get("global") or {})}
    for corpus_id, aliases in (data.get("corpora") or {}).items():
        scopes[corpus_id] = dict(aliases)
    return {scope: aliases for scope, aliases in scopes.items() if aliases}


def open_registry(root: Path) -> Registry:
    return FileRegistry(root)
