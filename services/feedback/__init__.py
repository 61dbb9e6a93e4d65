"""Feedback service: validates impression, click and rating events against the retriever's signed
query_ids and makes them durable in Kafka (or, while the broker is away, in a local fsynced spool
that drains in order when it returns)."""
