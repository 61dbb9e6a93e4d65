"""Kafka plumbing shared by feedback, the event store's consumer and the trainer.

- `connection`: producer/consumer/admin config builders from `KafkaSettings`, plus topic creation.

The client code is plain Kafka: production points `kafka.bootstrap_servers` at Apache Kafka. The development
broker (Tansu and SeaweedFS as child processes) is dev tooling: services/devstack/broker.py.
"""

from services.kafka.connection import admin_config, consumer_config, ensure_topics, producer_config

__all__ = [
    "admin_config",
    "consumer_config",
    "ensure_topics",
    "producer_config",
]
