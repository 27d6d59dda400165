"""Kafka plumbing: client set-up, topic admin, offsets, producer and dead-letter I/O."""
