"""The model lifecycle: champion and challenger in the MLflow Model Registry, and the gate.

- :mod:`~churnstream.lifecycle.registry`: register a model version (skops, trusted types),
  aliases, tags, materialise a registered version as a ``models/<version>/`` directory;
- :mod:`~churnstream.lifecycle.holdout`: the held-out rows both models are compared on;
- :mod:`~churnstream.lifecycle.shadow`: both models on the input topic's events of a window;
- :mod:`~churnstream.lifecycle.gate`: the verdicts (pure);
- :mod:`~churnstream.lifecycle.promotion`: the steps, each logged to MLflow, and what they
  change (aliases, then ``models/latest``, which a running scorer hot-reloads).

Needs the ``mlflow`` extra; MLflow is imported only by :mod:`registry`.
"""
