"""Streaming: the scorer's poll loop and the event producer, on Kafka.

- :mod:`~churnstream.streaming.loop`: the poll loop (:class:`~.loop.ScorerLoop`).
- :mod:`~churnstream.streaming.publish`: at-least-once and transactional publishing.
- :mod:`~churnstream.streaming.batches`: consumed messages as batches, and their offsets.
- :mod:`~churnstream.streaming.window`: the current window, folded into a summary.
- :mod:`~churnstream.streaming.models`: model hot reload and the shadow tap.
- :mod:`~churnstream.streaming.options`: ``ScoreOptions`` and ``ScoreSummary``.
- :mod:`~churnstream.streaming.observers`: the hooks through which the loop reports.
- :mod:`~churnstream.streaming.events_producer` and :mod:`~.checkpoint`: the event producer
  and its checkpoint.
"""
