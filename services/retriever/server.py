"""gRPC adapter: feedrank.v1.Retriever over RetrieverCore. No search logic lives here."""

from __future__ import annotations

import asyncio

from services.common.config import Settings
from services.common.grpc_server import GrpcApp, bind_address, metrics_port_for
from services.proto.feedrank.v1 import retriever_pb2, retriever_pb2_grpc
from services.retriever import convert
from services.retriever.backends import Corpora
from services.retriever.core import RetrieverCore

SERVICE_NAME = retriever_pb2.DESCRIPTOR.services_by_name["Retriever"].full_name


class RetrieverServicer(retriever_pb2_grpc.RetrieverServicer):
    def __init__(self, core: RetrieverCore):
        self.core = core

    async def Search(self, request, context):
        outcome = await self.core.search(convert.search_query(request, self.core.settings.retrieval))
        return convert.search_response(outcome)

    async def GetConfig(self, request, context):
        return convert.config_message(*self.core.get_config())

    async def UpdateConfig(self, request, context):
        fusion, reranking = convert.update_request(request)
        return convert.config_message(*self.core.update_config(fusion, reranking))

    async def ListCorpora(self, request, context):
        corpora = await asyncio.to_thread(self.core.list_corpora)
        return retriever_pb2.ListCorporaResponse(
            corpora=[retriever_pb2.CorpusInfo(corpus_id=cid, documents=n) for cid, n in corpora]
        )


def build_app(settings: Settings, core: RetrieverCore, port: int | None = None) -> GrpcApp:
    bind, chosen = bind_address(settings.endpoints.retriever, settings.endpoints.bind_host, port)
    servicer = RetrieverServicer(core)
    return GrpcApp(
        "retriever",
        [SERVICE_NAME],
        lambda server: retriever_pb2_grpc.add_RetrieverServicer_to_server(servicer, server),
        settings=settings,
        bind=bind,
        admin_methods=("UpdateConfig",),
        grace_seconds=settings.endpoints.grace_seconds,
        metrics_port=metrics_port_for(chosen, settings.endpoints.metrics_port_offset),
    )


async def serve(settings: Settings, port: int | None = None) -> None:
    # Serving only reads the corpora: opened read-only, replicas can share a data dir (vector/edge.py).
    core = RetrieverCore(settings, corpora=Corpora(settings.retrieval, settings.data_path, read_only=True))
    # Export/load the embedder before reporting SERVING, so the first search is not the slow one.
    await asyncio.to_thread(lambda: core.embedder)
    app = build_app(settings, core, port)
    await app.start()
    await app.set_serving(True)
    await app.run_until_signal(on_stop=core.aclose)
