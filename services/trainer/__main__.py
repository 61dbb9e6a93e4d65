"""`python -m services.trainer [--port P]`: serve feedrank.v1.Trainer.

Also consumes `kafka.topics.feedback` into the event store (training.consume_events), feeding the online
experiments' ledger from the same polls, and, when loop.every_events or loop.every_minutes is set, runs the
unattended loop.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import logging.handlers

from services.common.config import Settings, get_settings
from services.common.logs import setup_logging
from services.events.consumer import EventConsumer
from services.trainer.core import TrainerCore
from services.trainer.gate import ModelPublisher
from services.trainer.online.verdicts import ExperimentPublisher
from services.trainer.server import build_app

log = logging.getLogger("services.trainer")


def _log_jobs(settings: Settings) -> None:
    path = settings.trainer_log_path
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=5_000_000, backupCount=2)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    jobs = logging.getLogger("services.trainer")
    jobs.addHandler(handler)
    jobs.setLevel(logging.INFO)  # the job log keeps INFO even when the console shows only warnings


async def serve(settings: Settings, port: int | None) -> None:
    _log_jobs(settings)
    core = TrainerCore(settings, publisher=ModelPublisher(settings.kafka),
                       experiment_publisher=ExperimentPublisher(settings.kafka, settings.interleaving.decisions_topic))
    consumer = None
    if settings.training.consume_events:
        consumer = EventConsumer(settings.kafka, core.events, after_poll=core.consume_feedback)
        consumer.start()
    app = build_app(settings, core, port)
    await app.start()
    await app.set_serving(True)
    core.start_loop()

    async def on_stop() -> None:
        if consumer is not None:
            await asyncio.to_thread(consumer.stop)
        await asyncio.to_thread(core.close)

    await app.run_until_signal(on_stop)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m services.trainer")
    parser.add_argument("--port", type=int, default=None, help="gRPC port (default: endpoints.trainer)")
    args = parser.parse_args()
    settings = get_settings()
    setup_logging(settings.log_level, settings.log_json)
    asyncio.run(serve(settings, args.port))


if __name__ == "__main__":
    main()
