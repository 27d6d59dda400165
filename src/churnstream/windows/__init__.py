"""Window analytics, pure: no I/O, no clocks, no Kafka.

- :mod:`~churnstream.windows.stats`: one window of scoring folded into a summary dict.
- :mod:`~churnstream.windows.fields`: the summary's keys, sections and bins.
- :mod:`~churnstream.windows.drift`: PSI of the scored stream against the model's training
  profile.
- :mod:`~churnstream.windows.thresholds`: alert limits checked against a summary.
"""
