"""Reading a Prometheus ``/metrics`` page: the one parser for every reader in churnstream.

The text is parsed by prometheus_client's own parser (the exposition format has escaping,
labels in any order and ``_created`` samples a hand-written parser gets wrong); this module
only indexes the samples by name so that readers ask for a metric by its constant in
:mod:`churnstream.observability.names`:

    page = parse_metrics(text)
    page.total(names.SCORER_CONSUMED)       # summed over label sets; None if not exposed
    page.labelled(names.SCORER_LAG)         # [(labels, value), ...]
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

logger = logging.getLogger(__name__)

COUNTER_SUFFIX = "_total"


@dataclass(frozen=True)
class MetricsPage:
    """The samples of one scrape, by sample name, and the names of its metric families."""

    samples: Mapping[str, tuple[tuple[Mapping[str, str], float], ...]]
    families: frozenset[str]

    def has(self, name: str) -> bool:
        """True if the page exposes ``name``, even as a labelled metric with no sample yet.

        A counter's family is named without ``_total``; its samples carry it.
        """
        return (
            name in self.samples
            or name in self.families
            or name.removesuffix(COUNTER_SUFFIX) in self.families
        )

    def labelled(self, name: str) -> list[tuple[Mapping[str, str], float]]:
        """Every sample named ``name`` as (labels, value), in page order."""
        return list(self.samples.get(name, ()))

    def total(self, name: str) -> float | None:
        """The sum of the samples named ``name`` over their label sets; None if the page
        does not expose ``name`` at all (0.0 if it does, with no sample yet)."""
        if not self.has(name):
            return None
        return sum(value for _, value in self.samples.get(name, ()))


def parse_metrics(text: str) -> MetricsPage:
    """Parse a Prometheus text exposition; raises ValueError on malformed text."""
    samples: dict[str, list[tuple[Mapping[str, str], float]]] = {}
    families: set[str] = set()
    for family in text_string_to_metric_families(text):
        families.add(family.name)
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return MetricsPage({name: tuple(found) for name, found in samples.items()}, frozenset(families))
