"""Train, evaluate, save and load the churn model.

- :mod:`~churnstream.model.features`: pure feature engineering and drift profiles.
- :mod:`~churnstream.model.train`: the pipeline and the training protocol.
- :mod:`~churnstream.model.evaluate`: metrics, threshold choice, goals.
- :mod:`~churnstream.model.artifacts`: the ``models/`` layout, safe skops loading.
- :mod:`~churnstream.model.scorer`: :class:`Scorer`, loaded once, scores batches.
- :mod:`~churnstream.model.report`: report.md and its plots.

Submodules are imported on demand, so ``import churnstream.model.scorer`` does not pull in
matplotlib.
"""
