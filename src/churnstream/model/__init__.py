"""Train, evaluate, save and load the churn model.

- :mod:`~churnstream.model.feature_batch`: the feature columns, the engineered formulas and
  :class:`FeatureBatch` (numpy only: the scoring core imports it).
- :mod:`~churnstream.model.arrays`: the fitted pipeline as arrays, evaluated with numpy
  alone, bit for bit (the scoring core may import it).
- :mod:`~churnstream.model.features`: feature engineering on DataFrames, drift profiles.
- :mod:`~churnstream.model.pipeline`: the scikit-learn pipeline that is fitted.
- :mod:`~churnstream.model.compile`: reads a fitted pipeline into those arrays.
- :mod:`~churnstream.model.compiled_io`: those arrays as one ``compiled.npz`` (numpy only).
- :mod:`~churnstream.model.export`: training's export of the arrays, checked bit for bit.
- :mod:`~churnstream.model.lean`: :class:`LeanScorer`, the scorer process's model: the
  exported arrays only, no scikit-learn, scipy or pandas.
- :mod:`~churnstream.model.train`: the training protocol and the model's metadata.
- :mod:`~churnstream.model.evaluate`: metrics, threshold choice, goals.
- :mod:`~churnstream.model.artifacts`: the ``models/`` layout and metadata.json (light).
- :mod:`~churnstream.model.skops_io`: model.skops written with a version, loaded safely.
- :mod:`~churnstream.model.scorer`: :class:`Scorer`, loaded once, scores batches.
- :mod:`~churnstream.model.report`: report.md and its plots.

Submodules are imported on demand, so ``import churnstream.model.scorer`` does not pull in
matplotlib.
"""
