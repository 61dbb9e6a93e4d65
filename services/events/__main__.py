"""`python -m services.events`: consume feedback events into $FEEDRANK_DATA_DIR/events until SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from prometheus_client import start_http_server

from services.common.config import get_settings
from services.common.logs import setup_logging
from services.events.consumer import EventConsumer
from services.events.store import EventStore

log = logging.getLogger("services.events")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m services.events")
    parser.add_argument("--group", default=None, help="consumer group (default: kafka.consumer_group)")
    parser.add_argument("--metrics-port", type=int, default=0, help="serve Prometheus /metrics here (0: off)")
    args = parser.parse_args()
    settings = get_settings()
    setup_logging(settings.log_level, settings.log_json)
    if args.metrics_port:
        start_http_server(args.metrics_port)
    store = EventStore.open(settings)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    consumer = EventConsumer(settings.kafka, store, group_id=args.group)
    log.info("consuming", extra={"fields": {"topic": consumer.topic, "group": consumer.group_id,
                                            "store": str(store.path), "bootstrap": settings.kafka.bootstrap_servers}})
    consumer.run(stop)
    store.close()
    log.info("consumer stopped", extra={"fields": {"stored": consumer.stored_total}})


if __name__ == "__main__":
    main()
