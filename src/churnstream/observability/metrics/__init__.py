"""Prometheus metrics for the scorer and the producer, each on its own registry.

Nothing here touches the process-global ``prometheus_client.REGISTRY``: every scorer
observer and :class:`~.producer.ProducerMetrics` gets (or is given) a private
``CollectorRegistry``, so several scorers, or several tests, can run in one process.
Serve a registry with :func:`churnstream.observability.server.start_metrics_server`.

- :mod:`churnstream.observability.names`: every metric name.
- :mod:`~.scorer`: the scorer's counters, histograms, lag and liveness state.
- :mod:`~.drift`: the drift gauges of each window.
- :mod:`~.producer`: the producer's deliveries, failures, rate and progress.
- :mod:`~.histogram`: a histogram fed with whole numpy arrays.
"""
