"""Kafka plumbing shared by feedback, the event store's consumer, the trainer and `feedrank up`.

- `clients`: producer/consumer/admin config builders from `KafkaSettings`, plus topic creation.
- `launcher`: starts the development broker (Tansu, memory or s3 storage) and its object store
  (SeaweedFS) as child processes on free loopback ports.

The client code is plain Kafka: production points `kafka.bootstrap_servers` at Apache Kafka.
"""

from services.kafka.clients import admin_config, consumer_config, ensure_topics, producer_config
from services.kafka.launcher import DevKafka, SeaweedS3, TansuBroker, tansu_binary, weed_binary

__all__ = [
    "DevKafka",
    "SeaweedS3",
    "TansuBroker",
    "admin_config",
    "consumer_config",
    "ensure_topics",
    "producer_config",
    "tansu_binary",
    "weed_binary",
]
