"""Observability: Prometheus metrics, health endpoints and cluster status.

- :mod:`~churnstream.observability.metrics`: scorer, drift and producer metrics on a private
  ``CollectorRegistry`` (scorer observers and delivery/progress callbacks).
- :mod:`~churnstream.observability.names`: every metric name; and
  :mod:`~churnstream.observability.scrape`: the one parser of a ``/metrics`` page.
- :mod:`~churnstream.observability.server`: ``/metrics``, ``/health/live`` and
  ``/health/ready`` from a stdlib HTTP server in a daemon thread.
- :mod:`~churnstream.observability.health`: what "live" and "ready" mean for a scorer.
- :mod:`~churnstream.observability.runtime`: the one-call wiring of the above for a command.
- :mod:`~churnstream.observability.status` (pure) and
  :mod:`~churnstream.observability.cluster` (Kafka I/O): ``churnstream status``.

The drift maths and the alert thresholds are pure and live in :mod:`churnstream.windows`.
"""
