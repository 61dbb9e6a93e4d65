"""A model version's manifest: what the registry records for it and what an engine loads it by."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Manifest:
    version_id: str
    kind: str  # "cross-encoder"
    base_model: str
    max_length: int
    activation: str  # applied to the logit: "sigmoid" or "identity"
    files: dict[str, str]  # name -> sha256
    created_at: str
    run_id: str = ""
    corpus_id: str = ""
    triplet_files: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any) -> Manifest:
        """Raises ValueError for anything that is not a manifest object with a files table."""
        if not isinstance(data, dict):
            raise ValueError(f"a manifest is a JSON object, not {type(data).__name__}")
        files = data.get("files", {})
        if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
            raise ValueError("files must map each file name to its sha256")
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
