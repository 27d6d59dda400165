"""Kafka plumbing: the embedded broker, topic admin, producer, consumer and dead letters."""
