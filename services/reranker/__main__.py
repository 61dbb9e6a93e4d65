"""`python -m services.reranker [--port P]`: serve feedrank.v1.Reranker."""

from __future__ import annotations

import asyncio
import logging

from services.common.config import Settings
from services.common.grpc_server import GrpcApp, bind_address, metrics_port_for, service_main
from services.proto.feedrank.v1 import reranker_pb2, reranker_pb2_grpc
from services.registry.store import open_registry
from services.reranker.batching import Batcher
from services.reranker.cache import ResultCache
from services.reranker.catalog import Catalog
from services.reranker.cloud import make_cloud_reranker
from services.reranker.core import RerankerCore
from services.reranker.model_events import ModelEventFollower
from services.reranker.server import RerankerServicer
from services.reranker.versions import VersionPool

log = logging.getLogger("services.reranker")
SERVICE = reranker_pb2.DESCRIPTOR.services_by_name["Reranker"].full_name


async def serve(settings: Settings, port: int | None) -> None:
    batcher = Batcher(settings.engine)
    pool = VersionPool(open_registry(settings.registry_path), settings.engine, prepare=batcher.prepare)
    cloud = None
    if settings.reranking.reranker_mode == "cloud":
        cloud = make_cloud_reranker(settings.reranking, Catalog.load())
    core = RerankerCore(settings, pool, batcher, ResultCache(settings.engine.cache_entries), cloud)
    bind, chosen = bind_address(settings.endpoints.reranker, settings.endpoints.bind_host, port)
    app = GrpcApp(
        "reranker", [SERVICE], lambda server: reranker_pb2_grpc.add_RerankerServicer_to_server(RerankerServicer(core), server),
        settings=settings, bind=bind, grace_seconds=settings.endpoints.grace_seconds,
        metrics_port=metrics_port_for(chosen, settings.endpoints.metrics_port_offset),
    )
    batcher.start()
    await app.set_serving(False)
    await app.start()
    if settings.reranking.reranker_mode in ("local", "learning"):
        await pool.refresh()  # health turns SERVING only once the aliases' versions are loaded
    await app.set_serving(True)
    watch = asyncio.create_task(pool.watch(settings.engine.watch_interval_s))
    follower = None
    if settings.engine.follow_model_events and settings.reranking.reranker_mode == "learning":
        follower = ModelEventFollower(settings.kafka, pool, asyncio.get_running_loop())
        follower.start()

    async def on_stop() -> None:
        watch.cancel()
        if follower is not None:
            await asyncio.to_thread(follower.stop)
        await batcher.close()
        if cloud is not None:
            await cloud.aclose()

    await app.run_until_signal(on_stop)


if __name__ == "__main__":
    service_main("reranker", serve)
