"""`python -m services.feedback [--port P]`: serve feedrank.v1.Feedback."""

from __future__ import annotations

import logging

from services.common.config import Settings
from services.common.grpc_server import GrpcApp, bind_address, metrics_port_for, service_main
from services.feedback.core import FeedbackCore
from services.feedback.producer import KafkaSink
from services.feedback.server import FeedbackServicer
from services.feedback.spool import Spool
from services.proto.feedrank.v1 import feedback_pb2, feedback_pb2_grpc

log = logging.getLogger("services.feedback")
SERVICE = feedback_pb2.DESCRIPTOR.services_by_name["Feedback"].full_name


async def serve(settings: Settings, port: int | None) -> None:
    core = FeedbackCore(settings, KafkaSink(settings.kafka), Spool(settings.spool_path, settings.feedback.spool_max_bytes))
    bind, chosen = bind_address(settings.endpoints.feedback, settings.endpoints.bind_host, port)
    app = GrpcApp(
        "feedback", [SERVICE],
        lambda server: feedback_pb2_grpc.add_FeedbackServicer_to_server(FeedbackServicer(core), server),
        settings=settings, bind=bind, grace_seconds=settings.endpoints.grace_seconds,
        metrics_port=metrics_port_for(chosen, settings.endpoints.metrics_port_offset),
    )
    await core.start()
    await app.start()
    # Serving does not wait for the broker: with it down, events are spooled (durable) and drained later.
    await app.set_serving(True)
    log.info("feedback ready", extra={"fields": {"spool": str(settings.spool_path), "spool_depth": core.spool.depth,
                                                 "bootstrap": settings.kafka.bootstrap_servers}})
    await app.run_until_signal(core.close)


if __name__ == "__main__":
    service_main("feedback", serve)
