"""Kafka plumbing: the client factory, topic admin, the topic reader and the producer."""
