"""Observability: Prometheus metrics, health endpoints, drift checks and cluster status.

- :mod:`~churnstream.observability.metrics`: scorer and producer metrics on a private
  ``CollectorRegistry`` (a ``ScorerObserver`` and delivery/progress callbacks).
- :mod:`~churnstream.observability.names`: every metric name; and
  :mod:`~churnstream.observability.scrape`: the one parser of a ``/metrics`` page.
- :mod:`~churnstream.observability.server`: ``/metrics``, ``/health/live`` and
  ``/health/ready`` from a stdlib HTTP server in a daemon thread.
- :mod:`~churnstream.observability.health`: what "live" and "ready" mean for a scorer.
- :mod:`~churnstream.observability.drift`: PSI of the scored stream against the model's
  training profile (pure).
- :mod:`~churnstream.observability.status` (pure) and
  :mod:`~churnstream.observability.cluster` (Kafka I/O): ``churnstream status``.
"""
