"""The trainer's event store and the Kafka consumer that fills it.

- `EventStore` (store.py): SQLite keyed by event_id (duplicates dropped), with read helpers for the
  miner (impressions/clicks/ratings by corpus, stats by kind/corpus/day).
- `EVENT_KINDS` (kinds.py): one row per event kind (document, whether it teaches, validator), read by
  every package that switches on a kind.
- `EventConsumer` (consumer.py): a consumer group that writes to the store, then commits offsets.
- `python -m services.events`: run the consumer as its own process (tests, `feedrank up`).
"""

from services.events.consumer import EventConsumer
from services.events.store import AddResult, EventStore, Incoming, StatsRow, StoredEvent, store_path

__all__ = ["AddResult", "EventConsumer", "EventStore", "Incoming", "StatsRow", "StoredEvent", "store_path"]
