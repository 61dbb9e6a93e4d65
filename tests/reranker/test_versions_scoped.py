"""The version pool per corpus, single-flight loads, and naming a version id needing the admin role (in-process)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from services.common.auth import set_caller_role
from services.common.config import Settings
from services.common.errors import ErrorKind, FeedrankError
from services.reranker.batching import Batcher
from services.reranker.cache import ResultCache
from services.reranker.core import Document, RerankerCore, RerankQuery
from services.reranker.versions import VersionPool


def _query(model: str = "", corpus_id: str = "") -> RerankQuery:
    return RerankQuery("what do bees make", [Document("a", "honey bees make honey"), Document("b", "owls hunt mice")],
                       model=model, corpus_id=corpus_id)


def test_each_corpus_is_served_its_own_champion_all_loaded_at_once(registry):
    first, second = [m.version_id for m in registry.versions()]
    registry.set_alias("champion", second, "alpha's own", corpus_id="alpha")
    pool = VersionPool(registry, Settings().engine)

    async def run():
        await pool.refresh()
        return [(await pool.get("champion", c)).manifest.version_id for c in ("alpha", "beta", "")]

    assert asyncio.run(run()) == [second, first, first]  # beta has none of its own: the global one
    assert pool.all_alias_targets() == {"": {"champion": first}, "alpha": {"champion": second}}
    loaded = {v.manifest.version_id: v for v in pool.loaded()}
    assert set(loaded) == {first, second} and all(v.weights_bytes > 100_000 for v in loaded.values())

    registry.set_alias("champion", None, "alpha rolls back", corpus_id="alpha")
    assert asyncio.run(pool.refresh())
    assert asyncio.run(pool.get("champion", "alpha")).manifest.version_id == first
    assert [v.manifest.version_id for v in pool.loaded()] == [first]  # alpha's old version was let go


def test_concurrent_requests_for_one_version_build_one_session(registry, monkeypatch):
    other = [m.version_id for m in registry.versions()][1]
    pool = VersionPool(registry, Settings().engine)
    loads: list[str] = []
    real_load = pool._load
    guard = threading.Lock()

    def slow_load(version_id: str):
        with guard:
            loads.append(version_id)
        time.sleep(0.5)  # every request below arrives while the first load is still running
        return real_load(version_id)

    monkeypatch.setattr(pool, "_load", slow_load)

    async def run():
        return await asyncio.gather(*(pool.get(other) for _ in range(8)))

    versions = asyncio.run(run())
    assert loads == [other]
    assert len({id(v) for v in versions}) == 1


def test_naming_a_version_id_needs_the_admin_role(registry):
    other = [m.version_id for m in registry.versions()][1]
    settings = Settings()

    async def rerank(query: RerankQuery, role: str):
        set_caller_role(role)  # what the edge interceptor does for each call
        pool = VersionPool(registry, settings.engine)
        await pool.refresh()
        batcher = Batcher(settings.engine)
        batcher.start()
        try:
            return await RerankerCore(settings, pool, batcher, ResultCache(0)).rerank(query)
        finally:
            await batcher.close()

    for role in ("anonymous", "read"):
        with pytest.raises(FeedrankError) as err:
            asyncio.run(rerank(_query(other), role))
        assert err.value.kind is ErrorKind.UNAUTHENTICATED and err.value.field == "model"
        # An id that names no version is a mistake said as such, before any role check.
        with pytest.raises(FeedrankError) as err:
            asyncio.run(rerank(_query("v-no-such-version"), role))
        assert err.value.kind is ErrorKind.INVALID_ARGUMENT and err.value.field == "model"
        # Aliases need no admin role.
        assert asyncio.run(rerank(_query("champion", "alpha"), role)).model_version != other
    assert asyncio.run(rerank(_query(other), "admin")).model_version == other
    with pytest.raises(FeedrankError) as err:
        asyncio.run(rerank(_query("champion", "alpha\n"), "admin"))
    assert err.value.kind is ErrorKind.INVALID_ARGUMENT and err.value.field == "corpus_id"


def test_a_loaded_version_has_its_batch_curve_before_it_serves(registry):
    first = [m.version_id for m in registry.versions()][0]
    registry.set_alias("champion", first, "curve at load")

    async def run():
        batcher = Batcher(Settings().engine.model_copy(update={"batch_warmup_s": 0.2}))
        pool = VersionPool(registry, Settings().engine, prepare=batcher.prepare)
        try:
            await pool.refresh()  # no request yet, and the batcher's loop is not even running
            return batcher.policies(), await pool.get("champion")
        finally:
            await batcher.close()

    (policy,), served = asyncio.run(run())
    assert policy.version_id == first == served.manifest.version_id
    assert policy.curve is not None and policy.curve.pairs_per_s[1] > 0
