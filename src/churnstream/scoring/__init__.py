"""The scoring core: a batch of raw bytes in, predictions and dead letters out.

Depends on nothing but the model's arrays (:mod:`churnstream.model.feature_batch`,
:mod:`churnstream.model.arrays`), numpy, orjson and the contract (:mod:`churnstream.schemas`,
whose pydantic models decide and explain what the fast check leaves): no Kafka client,
pandas, scikit-learn or files. Every consumer of scoring calls it: the Kafka scorer,
``churnstream predict``, the REST API and shadow scoring. import-linter holds it to that
(``[tool.importlinter]`` in pyproject.toml).

- :mod:`~churnstream.scoring.messages`: RawMessage, OutMessage, Predicted, BatchResult, and
  RunCounts (what a run of batches came to).
- :mod:`~churnstream.scoring.validate`: the one fast check of a valid event, batch-wide.
- :mod:`~churnstream.scoring.decode`: the reference decoder (the contract model decides and
  explains), and events to features.
- :mod:`~churnstream.scoring.infer`: the model call, row by row if the batch call fails.
- :mod:`~churnstream.scoring.bands`: risk bands.
- :mod:`~churnstream.scoring.encode`: THE prediction body and headers.
- :mod:`~churnstream.scoring.dead_letter`: dead-letter bodies and headers.
- :mod:`~churnstream.scoring.batch`: :func:`score_batch`, all of the above for a batch.
- :mod:`~churnstream.scoring.shadow`: a shadow model's predictions and the comparison.
"""
