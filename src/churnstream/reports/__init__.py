"""Window-summary reports.

- :mod:`~churnstream.reports.files`: the summary JSON, named and written atomically, and read.
- :mod:`~churnstream.reports.render`: its Markdown and PNG charts, written next to it
  (:mod:`~churnstream.reports.markdown` and :mod:`~churnstream.reports.charts`, the only
  module that imports matplotlib).
- :mod:`~churnstream.reports.writer`: :class:`~churnstream.reports.writer.SummaryWriter`, the
  scorer's window hook: it writes the JSON and hands the rendering to
  :mod:`~churnstream.reports.render_worker`, a child process.
- :mod:`~churnstream.reports.console`: a compact view for the terminal.
"""
