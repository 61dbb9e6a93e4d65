"""The loaded model versions and the aliases pointing at them, swapped without dropping a request.

A new alias target is loaded in the background (checksums verified, ONNX session built, a
smoke pair scored) and only then swapped in with one assignment. Requests already holding
the old scorer finish on it. A version that fails any step is refused; the old one keeps
serving and the failure is reported by GetInfo.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass

from prometheus_client import Counter, Info

from services.common.config import EngineSettings
from services.common.errors import FeedrankError, invalid
from services.engine.scorer import Scorer, load_scorer
from services.registry.store import ALIASES, Manifest, Registry, check_version_id

log = logging.getLogger(__name__)

SWAPS = Counter("feedrank_model_swaps_total", "Alias swaps completed", ["alias"])
SWAP_FAILURES = Counter("feedrank_model_swap_failures_total", "Versions refused at load")
SERVED = Info("feedrank_model", "Version each alias serves")

_MAX_EXTRA_VERSIONS = 2  # versions named by id (not by an alias) kept loaded


@dataclass(frozen=True)
class LoadedVersion:
    manifest: Manifest
    scorer: Scorer
    loaded_at: str


class VersionPool:
    def __init__(self, registry: Registry, engine: EngineSettings):
        self.registry = registry
        self.engine = engine
        self._aliases: dict[str, LoadedVersion | None] = {}
        self._by_id: OrderedDict[str, LoadedVersion] = OrderedDict()
        self._refresh_lock = asyncio.Lock()
        self.swap_count = 0
        self.last_reload_at = ""
        self.last_reload_error = ""

    def alias_targets(self) -> dict[str, str]:
        return {a: v.manifest.version_id for a, v in self._aliases.items() if v is not None}

    def loaded(self) -> list[LoadedVersion]:
        seen = {v.manifest.version_id: v for v in self._aliases.values() if v is not None}
        seen.update(self._by_id)
        return list(seen.values())

    async def get(self, name: str) -> LoadedVersion | None:
        """The version an alias or id names; None when the alias points nowhere (the fused order)."""
        if name in ALIASES:
            return self._aliases.get(name)
        check_version_id(name, "model")
        for version in self.loaded():
            if version.manifest.version_id == name:
                return version
        try:
            version = await asyncio.to_thread(self._load, name)
        except FeedrankError as err:
            raise invalid("model", f"cannot serve version {name!r}: {err}") from err
        self._by_id[name] = version
        while len(self._by_id) > _MAX_EXTRA_VERSIONS:
            self._by_id.popitem(last=False)
        return version

    async def refresh(self) -> bool:
        """Bring every alias in line with the registry; True when something was swapped."""
        async with self._refresh_lock:
            targets = await asyncio.to_thread(self.registry.aliases)
            swapped = False
            for alias in ALIASES:
                wanted = targets.get(alias)
                current = self._aliases.get(alias)
                if (current.manifest.version_id if current else None) == wanted and alias in self._aliases:
                    continue
                if wanted is None:
                    self._aliases[alias] = None
                    swapped = True
                    continue
                reuse = next((v for v in self.loaded() if v.manifest.version_id == wanted), None)
                try:
                    version = reuse or await asyncio.to_thread(self._load, wanted)
                except Exception as err:  # any failure to load leaves the old version serving
                    SWAP_FAILURES.inc()
                    self.last_reload_error = f"{alias} -> {wanted}: {err}"
                    log.error("refused model version", extra={"fields": {"alias": alias, "error": str(err)}})
                    continue
                self._aliases[alias] = version  # the swap: one reference assignment
                self.swap_count += 1
                self.last_reload_error = ""
                SWAPS.labels(alias).inc()
                swapped = True
                log.info("swapped", extra={"fields": {"alias": alias, "version": wanted}})
            self.last_reload_at = _now()
            SERVED.info({a: v.manifest.version_id if v else "none" for a, v in self._aliases.items()})
            return swapped

    async def watch(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.refresh()
            except Exception as err:  # the watch must survive a registry hiccup
                self.last_reload_error = f"registry unreadable: {err}"
                log.warning("alias refresh failed: %s", err)

    def _load(self, version_id: str) -> LoadedVersion:
        folder = self.registry.local_path(version_id)  # verifies every checksum
        manifest = self.registry.manifest(version_id)
        scorer = load_scorer(folder, manifest, self.engine)
        scorer.warmup()
        return LoadedVersion(manifest, scorer, _now())


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
