"""The model registry: immutable, checksummed versions and atomically flipped aliases.

Layout under the root (DESIGN.md):
  versions/<version_id>/   model.onnx, tokenizer files, manifest.json (sha256 of every file)
  aliases.json             {"champion": "<id>", "challenger": "<id>"}, replaced atomically
  aliases.history.jsonl    append-only record of every alias change

`Registry` is the interface; `FileRegistry` keeps it on a local or ReadWriteMany volume.
An object-store implementation only has to provide the same five primitives.
"""

from __future__ import annotations

import abc
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from services.common.errors import ErrorKind, FeedrankError, invalid, not_found
from services.engine.manifest import Manifest

log = logging.getLogger(__name__)

ALIASES = ("champion", "challenger")
_VERSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_alias(alias: str) -> None:
    if alias not in ALIASES:
        raise invalid("alias", f"must be one of {', '.join(ALIASES)}")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_version_id(version_id: str, field_name: str = "version_id") -> str:
    """Version ids become folder names: refuse anything that could leave the registry root."""
    if not _VERSION_ID.match(version_id or "") or ".." in version_id:
        raise invalid(field_name, f"not a valid version id: {version_id!r}")
    return version_id


class Registry(abc.ABC):
    @abc.abstractmethod
    def publish(self, folder: Path, manifest_fields: dict[str, Any]) -> Manifest:
        """Copy a model folder in as a new immutable version (checksums computed here)."""

    @abc.abstractmethod
    def manifest(self, version_id: str) -> Manifest: ...

    @abc.abstractmethod
    def versions(self) -> list[Manifest]: ...

    @abc.abstractmethod
    def aliases(self) -> dict[str, str]: ...

    @abc.abstractmethod
    def set_alias(self, alias: str, version_id: str | None, reason: str) -> None:
        """Point an alias at a version (None removes it), atomically, recording history."""

    @abc.abstractmethod
    def history(self) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    def local_path(self, version_id: str) -> Path:
        """A local folder holding the version's files, checksums verified."""

    def resolve(self, name: str) -> str | None:
        """Alias or version id -> version id; None when the alias points nowhere (the fused order)."""
        if name in ALIASES:
            return self.aliases().get(name)
        check_version_id(name, "model")
        self.manifest(name)
        return name

    def manifest_digest(self, version_id: str) -> str:
        data = json.dumps(self.manifest(version_id).to_json(), sort_keys=True).encode()
        return hashlib.sha256(data).hexdigest()


class FileRegistry(Registry):
    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self.versions_dir = self.root / "versions"
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        self._aliases_file = self.root / "aliases.json"
        self._history_file = self.root / "aliases.history.jsonl"

    def _version_dir(self, version_id: str) -> Path:
        path = (self.versions_dir / check_version_id(version_id)).resolve()
        if path.parent != self.versions_dir:
            raise invalid("version_id", "escapes the registry root")
        return path

    def publish(self, folder: Path, manifest_fields: dict[str, Any]) -> Manifest:
        folder = Path(folder)
        version_id = manifest_fields.get("version_id") or new_version_id()
        target = self._version_dir(version_id)
        if target.exists():
            raise FeedrankError(ErrorKind.FAILED_PRECONDITION, f"version {version_id} exists; versions are immutable")
        staging: Path | None = None
        try:
            staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.versions_dir))
            files: dict[str, str] = {}
            for src in sorted(p for p in folder.iterdir() if p.is_file() and p.name != "manifest.json"):
                shutil.copy2(src, staging / src.name)
                files[src.name] = sha256_file(staging / src.name)
            manifest = Manifest.from_json(
                {**manifest_fields, "version_id": version_id, "files": files, "created_at": _now()}
            )
            _write_json_atomic(staging / "manifest.json", manifest.to_json())
            os.rename(staging, target)  # a reader sees the whole version or nothing
        except OSError as err:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            raise FeedrankError(ErrorKind.UNAVAILABLE, f"registry write failed: {err}") from err
        return manifest

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

    def aliases(self) -> dict[str, str]:
        try:
            return dict(json.loads(self._aliases_file.read_text()))
        except FileNotFoundError:
            return {}

    def set_alias(self, alias: str, version_id: str | None, reason: str) -> None:
        check_alias(alias)
        if version_id is not None:
            self.manifest(version_id)
        current = self.aliases()
        previous = current.get(alias)
        if version_id is None:
            current.pop(alias, None)
        else:
            current[alias] = version_id
        record = {"at": _now(), "alias": alias, "from": previous, "to": version_id, "reason": reason}
        before = self.aliases()
        try:
            _write_json_atomic(self._aliases_file, current)
        except OSError as err:
            raise FeedrankError(ErrorKind.UNAVAILABLE, f"registry write failed: {err}") from err
        try:
            with self._history_file.open("a") as fh:
                fh.write(json.dumps(record) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as err:
            # A flip the history does not record must not stand: put the aliases back.
            try:
                _write_json_atomic(self._aliases_file, before)
            except OSError:
                log.error("aliases.json changed but its history could not be written: %s", err)
            raise FeedrankError(ErrorKind.UNAVAILABLE, f"registry write failed: {err}") from err

    def history(self) -> list[dict[str, Any]]:
        try:
            return [json.loads(line) for line in self._history_file.read_text().splitlines() if line.strip()]
        except FileNotFoundError:
            return []

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


def new_version_id() -> str:
    return time.strftime("v%Y%m%d-%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


_GENERATED_VERSION_ID = re.compile(r"^v\d{8}-\d{6}-[0-9a-f]{6}$")


def is_generated_version_id(name: str) -> bool:
    """Whether `name` has the shape new_version_id() gives (other APIs' model names never do)."""
    return bool(_GENERATED_VERSION_ID.match(name))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with tmp.open("w") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def open_registry(root: Path) -> Registry:
    return FileRegistry(root)
