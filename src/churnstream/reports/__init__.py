"""Window-summary reports.

- :mod:`~churnstream.reports.files`: the JSON, Markdown and PNG files of a summary, written
  atomically; :class:`~churnstream.reports.files.SummaryWriter` is the scorer's window hook.
- :mod:`~churnstream.reports.markdown` and :mod:`~churnstream.reports.charts`: the renderings.
- :mod:`~churnstream.reports.console`: a compact view for the terminal.
"""
