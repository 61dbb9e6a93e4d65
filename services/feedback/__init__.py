"""Feedback service: validates impression, click and rating events and makes them durable in Kafka
(or, while the broker is away, in a local fsynced spool that drains in order when it returns)."""
