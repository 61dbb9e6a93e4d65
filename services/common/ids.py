"""Id patterns that become folder names or keys: matched whole (fullmatch), so 'scifact\\n' is refused."""

from __future__ import annotations

import re

from services.common.errors import invalid

_CORPUS_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_VERSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_corpus_id(corpus_id: str, field: str = "corpus_id") -> str:
    if not isinstance(corpus_id, str) or not _CORPUS_ID.fullmatch(corpus_id):
        raise invalid(field, f"{corpus_id!r} is not a corpus id (letters, digits, '_', '.', '-'; at most 64)")
    return corpus_id


def check_version_id(version_id: str, field: str = "version_id") -> str:
    """Version ids become folder names: refuse anything that could leave the registry root."""
    if not isinstance(version_id, str) or not _VERSION_ID.fullmatch(version_id) or ".." in version_id:
        raise invalid(field, f"not a valid version id: {version_id!r}")
    return version_id
