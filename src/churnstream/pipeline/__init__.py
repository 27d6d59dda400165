"""The streaming pipeline: transform, producer and scorer loops."""
