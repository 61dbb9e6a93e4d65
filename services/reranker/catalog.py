"""The models catalog: every rerank and embedding model feedrank knows, local or hosted.

`models.json` (shipped next to this module) keeps the seed system's layout: a header with the
currency, the date the prices were checked and their sources, then a list of models. Each model
names its provider, its id (`model`), what it does (`components`: RERANK or EMB), its token
limit, and for hosted models the published price with the unit it is quoted in. Prices we could
not confirm are left null and the entry's `notes` says so, rather than guessing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.common.errors import ErrorKind, FeedrankError, invalid

DEFAULT_PATH = Path(__file__).with_name("models.json")

_KINDS = {"RERANK": "rerank", "EMB": "embedding"}

# How many billed units one quoted price covers. Providers bill rerank calls either in searches
# (Cohere: one query with up to 100 documents) or in tokens (Voyage, Jina).
UNIT_SIZE: dict[str, int] = {"search": 1, "1k searches": 1_000, "token": 1, "1M tokens": 1_000_000}


@dataclass(frozen=True)
class CatalogModel:
    id: str
    provider: str
    kind: str  # "rerank" | "embedding"
    max_tokens: int
    price_per_unit: float | None  # USD per `unit`; None when not published or not confirmed
    unit: str | None  # a key of UNIT_SIZE, e.g. "1k searches", "1M tokens"
    local: bool
    path_hint: str | None
    note: str | None = None

    def cost(self, billed_units: int) -> float | None:
        """Estimated USD for `billed_units` of this model, or None if its price is unknown."""
        if self.price_per_unit is None or self.unit is None:
            return None
        return billed_units * self.price_per_unit / UNIT_SIZE[self.unit]


class Catalog:
    def __init__(self, models: list[CatalogModel], currency: str = "USD", last_updated: str = ""):
        self.currency = currency
        self.last_updated = last_updated
        self._by_key: dict[tuple[str, str], CatalogModel] = {}
        for model in models:
            key = (model.provider, model.id)
            if key in self._by_key:
                raise _bad_file(f"model {model.id!r} of provider {model.provider!r} is listed twice")
            self._by_key[key] = model

    @classmethod
    def load(cls, path: Path | None = None) -> Catalog:
        path = path or DEFAULT_PATH
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as err:
            raise _bad_file(f"cannot read models catalog {path}: {err.strerror}") from err
        except json.JSONDecodeError as err:
            raise _bad_file(f"models catalog {path} is not valid JSON: {err}") from err
        if not isinstance(data, dict) or not isinstance(data.get("models"), list):
            raise _bad_file(f"models catalog {path} must be an object with a 'models' list")
        models = [_parse_model(entry, i, path) for i, entry in enumerate(data["models"])]
        currency, updated = str(data.get("currency", "USD")), str(data.get("last_updated", ""))
        return cls(models, currency=currency, last_updated=updated)

    def get(self, provider: str, model_id: str) -> CatalogModel:
        model = self._by_key.get((provider, model_id))
        if model is None:
            known = sorted(m.id for m in self._by_key.values() if m.provider == provider)
            raise invalid(
                "reranker_cloud_model",
                f"unknown model {model_id!r} for provider {provider!r}; the catalog knows {known or 'none'}",
            )
        return model

    def models(self, kind: str | None = None) -> list[CatalogModel]:
        """All models (of one kind, if given), sorted by provider then id."""
        if kind is not None and kind not in _KINDS.values():
            raise invalid("kind", f"must be one of {sorted(_KINDS.values())}, got {kind!r}")
        chosen = [m for m in self._by_key.values() if kind is None or m.kind == kind]
        return sorted(chosen, key=lambda m: (m.provider, m.id))


def _parse_model(entry: Any, index: int, path: Path) -> CatalogModel:
    where = f"models catalog {path}, models[{index}]"
    if not isinstance(entry, dict):
        raise _bad_file(f"{where} is not an object")

    def need(key: str, kind: type | tuple[type, ...]) -> Any:
        value = entry.get(key)
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            raise _bad_file(f"{where}: '{key}' is missing or not a {getattr(kind, '__name__', kind)}")
        return value

    model_id = need("model", str)
    provider = need("provider", str)
    components = need("components", list)
    kinds = {_KINDS.get(c) for c in components}
    if len(kinds) != 1 or None in kinds:
        raise _bad_file(f"{where}: 'components' must be exactly one of {sorted(_KINDS)}, got {components}")
    max_tokens = need("max_tokens", int)
    if max_tokens < 1:
        raise _bad_file(f"{where}: 'max_tokens' must be positive")
    local = need("local", bool)
    price = entry.get("price_per_unit")
    unit = entry.get("unit")
    if price is not None and (isinstance(price, bool) or not isinstance(price, (int, float)) or price < 0):
        raise _bad_file(f"{where}: 'price_per_unit' must be a non-negative number or null")
    if unit is not None and unit not in UNIT_SIZE:
        raise _bad_file(f"{where}: 'unit' must be one of {sorted(UNIT_SIZE)} or null, got {unit!r}")
    if price is not None and unit is None:
        raise _bad_file(f"{where}: a price needs a 'unit'")
    path_hint = entry.get("path_hint")
    note = entry.get("notes")
    return CatalogModel(
        id=model_id,
        provider=provider,
        kind=kinds.pop(),
        max_tokens=max_tokens,
        price_per_unit=None if price is None else float(price),
        unit=unit,
        local=local,
        path_hint=path_hint if isinstance(path_hint, str) else None,
        note=note if isinstance(note, str) else None,
    )


def _bad_file(message: str) -> FeedrankError:
    # A broken catalog is a deployment problem, not a bad request.
    return FeedrankError(ErrorKind.FAILED_PRECONDITION, message)
