"""The loaded model versions and the per-corpus aliases pointing at them, swapped without dropping a request.

Every corpus's champion and challenger (and the global scope's, which serve a corpus without its own)
are kept loaded at once: a request names an alias and a corpus, and is served by that corpus's version,
a corpus-neutral one, or the fused order, never by another corpus's version (services/registry/store.py).
A new alias target is loaded in the background (checksums verified, ONNX session built, a smoke pair
scored) and only then swapped in with one assignment. Requests already holding the old scorer finish
on it. A version that fails any step is refused; the old one keeps serving and the failure is reported
by GetInfo. Loads are single-flight: concurrent requests for one version build one session.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Info

from services.common.config import EngineSettings
from services.common.errors import FeedrankError, invalid
from services.engine.scorer import Scorer, load_scorer
from services.registry.store import ALIASES, GLOBAL, Manifest, Registry, check_version_id, pick, scope_name

log = logging.getLogger(__name__)

SWAPS = Counter("feedrank_model_swaps_total", "Alias swaps completed", ["corpus", "alias"])
SWAP_FAILURES = Counter("feedrank_model_swap_failures_total", "Versions refused at load")
SERVED = Info("feedrank_model", "Version each alias of a corpus serves", ["corpus"])
WEIGHTS = Gauge("feedrank_model_weights_bytes", "Bytes of model files a loaded version holds in memory", ["version"])

PRELOADED = ("champion", "challenger")  # kept loaded for every corpus; `previous` loads when asked for
_MAX_EXTRA_VERSIONS = 2  # versions named by id, or by a non-preloaded alias, kept loaded


@dataclass(frozen=True)
class LoadedVersion:
    manifest: Manifest
    scorer: Scorer
    loaded_at: str
    weights_bytes: int  # the version's files (ONNX graph and weights, arrays): what its session holds


class VersionPool:
    def __init__(self, registry: Registry, engine: EngineSettings,
                 prepare: Callable[[Scorer], Awaitable[object]] | None = None):
        self.registry = registry
        self.engine = engine
        self._prepare = prepare  # run on each loaded scorer before it serves (the batcher's curve)
        self._serving: dict[str, dict[str, LoadedVersion]] = {}  # corpus (GLOBAL too) -> alias -> loaded
        self._targets: dict[str, dict[str, str]] = {}  # the registry's aliases as last read
        self._by_id: OrderedDict[str, LoadedVersion] = OrderedDict()
        self._loading: dict[str, asyncio.Future[LoadedVersion]] = {}
        self._refresh_lock = asyncio.Lock()
        self.swap_count = 0
        self.last_reload_at = ""
        self.last_reload_error = ""

    def alias_targets(self, corpus_id: str = GLOBAL) -> dict[str, str]:
        """The versions one scope's aliases serve here (its own only)."""
        return {a: v.manifest.version_id for a, v in self._serving.get(corpus_id, {}).items()}

    def all_alias_targets(self) -> dict[str, dict[str, str]]:
        return {scope: self.alias_targets(scope) for scope in sorted(self._serving) if self._serving[scope]}

    def loaded(self) -> list[LoadedVersion]:
        seen = {v.manifest.version_id: v for aliases in self._serving.values() for v in aliases.values()}
        seen.update(self._by_id)
        return list(seen.values())

    async def get(self, name: str, corpus_id: str = GLOBAL) -> LoadedVersion | None:
        """The version an alias of the corpus or an id names; None when the alias points nowhere (fused order)."""
        if name in PRELOADED:
            return pick(self._serving, corpus_id, name)
        if name in ALIASES:
            target = pick(self._targets, corpus_id, name)
            return None if target is None else await self._get_by_id(target)
        check_version_id(name, "model")
        return await self._get_by_id(name)

    async def check_exists(self, version_id: str) -> None:
        """INVALID_ARGUMENT (field `model`) unless the id names a version with a readable manifest; loads nothing."""
        check_version_id(version_id, "model")
        try:
            await asyncio.to_thread(self.registry.manifest, version_id)
        except FeedrankError as err:
            raise invalid("model", f"cannot serve version {version_id!r}: {err}") from err

    async def _get_by_id(self, version_id: str) -> LoadedVersion:
        try:
            version = await self._load_once(version_id)
        except FeedrankError as err:
            raise invalid("model", f"cannot serve version {version_id!r}: {err}") from err
        if not any(v is version for aliases in self._serving.values() for v in aliases.values()):
            self._by_id[version_id] = version
            self._by_id.move_to_end(version_id)
            while len(self._by_id) > _MAX_EXTRA_VERSIONS:
                self._by_id.popitem(last=False)
            self._export_weights()
        return version

    async def _load_once(self, version_id: str) -> LoadedVersion:
        """The loaded version, loading it at most once however many callers ask at the same time."""
        for version in self.loaded():
            if version.manifest.version_id == version_id:
                return version
        future = self._loading.get(version_id)
        if future is None:
            future = asyncio.ensure_future(self._load_and_prepare(version_id))
            self._loading[version_id] = future
            future.add_done_callback(lambda _: self._loading.pop(version_id, None))
        return await asyncio.shield(future)  # a cancelled caller leaves the load to the others

    async def _load_and_prepare(self, version_id: str) -> LoadedVersion:
        version = await asyncio.to_thread(self._load, version_id)
        if self._prepare is not None:
            await self._prepare(version.scorer)
        return version

    async def refresh(self) -> bool:
        """Bring every corpus's aliases in line with the registry; True when something was swapped."""
        async with self._refresh_lock:
            targets = await asyncio.to_thread(self.registry.all_aliases)
            self._targets = targets
            swapped = False
            for scope in sorted(set(targets) | set(self._serving)):
                for alias in PRELOADED:
                    swapped |= await self._swap(scope, alias, targets.get(scope, {}).get(alias))
            self._serving = {scope: aliases for scope, aliases in self._serving.items() if aliases}
            self.last_reload_at = _now()
            SERVED.clear()
            for scope, aliases in self.all_alias_targets().items():
                SERVED.labels(scope_name(scope)).info(aliases)
            self._export_weights()
            return swapped

    async def _swap(self, scope: str, alias: str, wanted: str | None) -> bool:
        serving = self._serving.setdefault(scope, {})
        current = serving.get(alias)
        if (current.manifest.version_id if current else None) == wanted:
            return False
        if wanted is None:
            serving.pop(alias, None)
            log.info("alias cleared", extra={"fields": {"corpus": scope_name(scope), "alias": alias}})
            return True
        try:
            version = await self._load_once(wanted)
        except Exception as err:  # any failure to load leaves the old version serving
            SWAP_FAILURES.inc()
            self.last_reload_error = f"{scope_name(scope)}/{alias} -> {wanted}: {err}"
            log.error("refused model version", extra={"fields": {"corpus": scope_name(scope), "alias": alias,
                                                                  "error": str(err)}})
            return False
        serving[alias] = version  # the swap: one reference assignment
        self._by_id.pop(wanted, None)
        self.last_reload_error = ""
        self.swap_count += 1
        SWAPS.labels(scope_name(scope), alias).inc()
        log.info("swapped", extra={"fields": {"corpus": scope_name(scope), "alias": alias, "version": wanted}})
        return True

    def _export_weights(self) -> None:
        WEIGHTS.clear()
        for version in self.loaded():
            WEIGHTS.labels(version.manifest.version_id).set(version.weights_bytes)

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
        weights = sum((folder / name).stat().st_size for name in manifest.files)
        return LoadedVersion(manifest, scorer, _now(), weights)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
