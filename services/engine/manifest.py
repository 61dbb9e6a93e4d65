"""A model version's manifest: what the registry records for it and what an engine loads it by.

Every switch that changes how a version is served or trained from is a typed field here; `extra`
keeps what is only reported (loss, start_from, by_source, ...). Manifests written before these
fields existed carry the switches inside `extra`: `from_json` lifts them out, so old versions load.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class Blend:
    """A bi-encoder's score blended with the fused order over the fused top `depth` (reranker/combine.py)."""

    weight: float
    depth: int


@dataclass(frozen=True)
class LinearHead:
    """A logistic regression over the legs and the model score of the fused top `depth`, z-scored."""

    depth: int
    coef: list[float]
    intercept: float
    mean: list[float]
    scale: list[float]


Head = Blend | LinearHead

# Switches older manifests kept in `extra` (see the module docstring).
_LIFTED = ("query_max_length", "doc_tower_is_dense_leg", "vector_leg_adapter", "hf_dir", "triplets",
           "blend", "linear_head", "fusion")


@dataclass(frozen=True)
class Manifest:
    version_id: str
    kind: str  # "cross-encoder" or "bi-encoder"
    base_model: str
    max_length: int  # the (document) token limit
    activation: str  # applied to the logit: "sigmoid" or "identity"
    files: dict[str, str]  # name -> sha256
    created_at: str
    run_id: str = ""
    corpus_id: str = ""
    triplet_files: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    triplets: int = 0  # how many triplets trained it (the gate's min_triplets); 0 for an imported model
    hf_dir: str = ""  # Hugging Face weights a cross-encoder run fine-tunes from when this is the champion
    query_max_length: int = 64  # bi-encoder: token limit of the query tower
    # bi-encoder: the document tower is the retriever's dense-leg embedder, so the leg's vectors may be sent
    doc_tower_is_dense_leg: bool = False
    vector_leg_adapter: bool = False  # the retriever's vector leg searches through this version's adapter.npy
    blend: Blend | None = None
    linear_head: LinearHead | None = None
    # The fusion this version's corpus is served while it reranks there (services/retriever/fusion.py `learned`
    # writes it, `served_fusion` checks it); None = the configured fusion.
    fusion: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # reported only, never read to decide anything

    def __post_init__(self) -> None:
        if self.blend is not None and self.linear_head is not None:
            raise ValueError("a version has one head: a blend or a linear head, not both")

    @property
    def head(self) -> Head | None:
        """What the served scores go through (reranker/combine.py final_scores)."""
        return self.linear_head or self.blend

    @classmethod
    def from_json(cls, data: Any) -> Manifest:
        """Raises ValueError (or TypeError) for anything that is not a manifest object with a files table."""
        if not isinstance(data, dict):
            raise ValueError(f"a manifest is a JSON object, not {type(data).__name__}")
        files = data.get("files", {})
        if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
            raise ValueError("files must map each file name to its sha256")
        data = dict(data)
        extra = dict(data.get("extra") or {})
        for key in _LIFTED:
            if key in extra:
                value = extra.pop(key)
                data.setdefault(key, value)
        data["extra"] = extra
        if isinstance(data.get("blend"), dict):
            data["blend"] = Blend(**data["blend"])
        if isinstance(data.get("linear_head"), dict):
            data["linear_head"] = LinearHead(**data["linear_head"])
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
