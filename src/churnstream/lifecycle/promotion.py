"""The lifecycle's steps: register, compare (held-out gate), shadow (shadow gate), promote,
rollback. Each step is one MLflow run in the ``churnstream-lifecycle`` experiment, and each
gate's outcome is also a tag on the challenger's model version, saying which champion it
was measured against: ``promote`` trusts only passes measured against the current champion.

What serves is ``models/latest``, as before: promotion and rollback materialise the new
champion into ``models/<version>/`` (verified like any model a scorer loads), move the
registry's ``champion`` alias, then replace ``latest`` atomically; a running scorer
hot-reloads it between batches. Every failure before that last step leaves the serving
model as it was.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from churnstream.exceptions import ChurnstreamError, ModelLoadError
from churnstream.lifecycle import gate, holdout, shadow
from churnstream.lifecycle.registry import (
    CHALLENGER,
    CHAMPION,
    TAG_REGISTERED_MS,
    RegisteredVersion,
    Registry,
    RegistryError,
)
from churnstream.model import artifacts
from churnstream.model.scorer import Scorer
from churnstream.settings import Settings

logger = logging.getLogger(__name__)

EXPERIMENT = "churnstream-lifecycle"
TAG_GATE = "churnstream.gate."
REASON_SUFFIX = ".reason"
TAG_PROMOTED_MS = "churnstream.promoted_ms"
TAG_ROLLED_BACK_MS = "churnstream.rolled_back_ms"


class GateRefused(ChurnstreamError):
    """The challenger did not pass a gate; the champion keeps serving."""

    exit_code: ClassVar[int] = 3


class ShadowWindowOpen(ChurnstreamError):
    """The challenger's shadow window has not ended yet."""

    exit_code: ClassVar[int] = 4


def open_registry(settings: Settings, *, create: bool = False) -> Registry:
    cfg = settings.promotion
    return Registry(cfg.registered_model, cfg.tracking_uri, create=create)


@dataclass(frozen=True)
class Registered:
    version: RegisteredVersion
    alias: str


def register(settings: Settings, path: Path, *, bootstrap: bool = False) -> Registered:
    """Register the model at ``path`` (a models root or a version dir) as ``challenger``.

    With ``bootstrap`` and no champion yet, it becomes the champion instead (nothing to
    beat) and ``models/latest`` points at it.
    """
    version_dir = artifacts.resolve_version_dir(path)
    try:
        Scorer.load(version_dir)
    except ModelLoadError as exc:
        raise RegistryError(f"candidate fails to load, not registered: {exc}") from exc
    registry = open_registry(settings, create=True)
    champion = registry.alias(CHAMPION)
    rv = registry.register(version_dir, experiment=EXPERIMENT)
    alias = CHAMPION if bootstrap and champion is None else CHALLENGER
    if alias == CHAMPION:
        _serve(registry, rv, settings.model.models_dir, history=[])
    else:
        registry.set_alias(CHALLENGER, rv.number)
    registry.log_step(
        "register",
        experiment=EXPERIMENT,
        params={"registered_version": rv.number, "model_version": rv.model_version},
        tags={"churnstream.alias": alias},
    )
    return Registered(rv, alias)


@dataclass(frozen=True)
class Evaluation:
    version: str
    metrics: dict[str, float]
    source: str


def evaluate(
    settings: Settings, path: Path, data_path: Path | None = None, *, log: bool = True
) -> Evaluation:
    """Load a trained model as a scorer would and score it on its held-out rows again.

    GateRefused (exit 3) when its ROC AUC is under ``promotion.min_roc_auc``. On the
    model's own training file the numbers must equal what training recorded: a different
    result means the file or the model is not what metadata.json says.
    """
    try:
        scorer = Scorer.load(path)
    except ModelLoadError as exc:
        raise RegistryError(f"candidate fails to load: {exc}") from exc
    rows = holdout.holdout_for(scorer.metadata, data_path)
    metrics = holdout.score(scorer, rows)
    recorded = scorer.metadata["summary_metrics"]
    if (
        rows.source.startswith("held-out split")
        and abs(metrics["roc_auc"] - recorded["roc_auc"]) > 1e-9
    ):
        raise RegistryError(
            f"{scorer.version}: held-out ROC AUC {metrics['roc_auc']:.6f} now, "
            f"{recorded['roc_auc']:.6f} at training; the data or the model changed"
        )
    floor = settings.promotion.min_roc_auc
    refused = metrics["roc_auc"] < floor
    if log:
        open_registry(settings, create=True).log_step(
            "evaluate",
            experiment=EXPERIMENT,
            params={"model_version": scorer.version, "data": rows.source},
            metrics=metrics,
            failed=refused,
        )
    if refused:
        raise GateRefused(
            f"{scorer.version}: held-out ROC AUC {metrics['roc_auc']:.4f} < "
            f"promotion.min_roc_auc {floor:g} ({rows.source})"
        )
    return Evaluation(scorer.version, metrics, rows.source)


@dataclass(frozen=True)
class Pair:
    champion: RegisteredVersion
    challenger: RegisteredVersion
    champion_scorer: Scorer
    challenger_scorer: Scorer


def _load_pair(registry: Registry) -> Pair:
    champion = registry.require(CHAMPION)
    challenger = registry.require(CHALLENGER)
    if champion.number == challenger.number:
        raise RegistryError(f"{challenger.label} is both champion and challenger")
    with tempfile.TemporaryDirectory(prefix="churnstream-gate-") as tmp:
        scorers = [registry.materialize(rv, Path(tmp))[1] for rv in (champion, challenger)]
    return Pair(champion, challenger, scorers[0], scorers[1])


def _record(registry: Registry, pair: Pair, verdict: gate.Verdict) -> None:
    registry.tag_version(
        pair.challenger.number,
        {
            TAG_GATE + verdict.gate: f"{verdict.state} vs v{pair.champion.number}",
            TAG_GATE + verdict.gate + REASON_SUFFIX: verdict.line()[:5000],
        },
    )
    registry.log_step(
        f"gate-{verdict.gate}",
        experiment=EXPERIMENT,
        params={"champion": pair.champion.label, "challenger": pair.challenger.label},
        metrics=verdict.metrics,
        tags={"churnstream.verdict": verdict.line()[:5000]},
        failed=not verdict.passed,
    )
    logger.debug("%s", verdict.line())


def compare(settings: Settings, data_path: Path | None = None) -> gate.Verdict:
    """The held-out gate; GateRefused (exit 3) with every reason when it is not passed."""
    registry = open_registry(settings)
    pair = _load_pair(registry)
    rows = holdout.holdout_for(pair.challenger_scorer.metadata, data_path)
    verdict = gate.holdout_verdict(
        holdout.score(pair.champion_scorer, rows),
        holdout.score(pair.challenger_scorer, rows),
        rows.rows,
        settings.promotion,
    )
    _record(registry, pair, verdict)
    if not verdict.passed:
        raise GateRefused(f"{pair.challenger.label}: {verdict.line()} ({rows.source})")
    return verdict


def shadow_window(rv: RegisteredVersion, settings: Settings) -> tuple[int, int]:
    """The challenger's shadow window, in epoch milliseconds: ``[registered, + window)``."""
    try:
        start = int(rv.tags[TAG_REGISTERED_MS])
    except (KeyError, ValueError):
        raise RegistryError(f"{rv.label} has no {TAG_REGISTERED_MS} tag") from None
    return start, start + int(settings.promotion.shadow_window_s * 1000)


def run_shadow(
    settings: Settings,
    *,
    wait: bool = False,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> gate.Verdict:
    """The shadow gate on the challenger's window; ShadowWindowOpen while it is still open
    (unless ``wait``: then it sleeps until the window ends)."""
    registry = open_registry(settings)
    challenger = registry.require(CHALLENGER)
    start_ms, end_ms = shadow_window(challenger, settings)
    left_s = end_ms / 1000 - clock()
    if left_s > 0:
        if not wait:
            raise ShadowWindowOpen(
                f"{challenger.label} is in shadow for another {left_s:.0f}s; "
                "run again later or pass --wait"
            )
        logger.info("waiting %.1fs for the end of the shadow window", left_s)
        sleep(left_s)
    pair = _load_pair(registry)
    events, invalid = shadow.window_events(
        settings.kafka, settings.topics.raw.name, start_ms, end_ms
    )
    stats = shadow.compare(pair.champion_scorer, pair.challenger_scorer, events, invalid)
    verdict = gate.shadow_verdict(stats, settings.promotion)
    _record(registry, pair, verdict)
    if not verdict.passed:
        raise GateRefused(f"{pair.challenger.label}: {verdict.line()}")
    return verdict


@dataclass(frozen=True)
class Moved:
    """What promote or rollback did to the champion."""

    previous: RegisteredVersion
    current: RegisteredVersion
    version_dir: Path


def gates_pending(challenger: RegisteredVersion, champion: RegisteredVersion) -> list[str]:
    """The gates the challenger has not passed against this champion."""
    wanted = f"{gate.PASSED} vs v{champion.number}"
    return [
        name
        for name in (gate.HOLDOUT, gate.SHADOW)
        if challenger.tags.get(TAG_GATE + name) != wanted
    ]


def check_not_refused(challenger: RegisteredVersion, champion: RegisteredVersion) -> None:
    """GateRefused if a gate refused the challenger against this champion: a refusal stands
    until that gate is run again explicitly (``model compare`` / ``model shadow``)."""
    refused = f"{gate.REFUSED} vs v{champion.number}"
    for name in (gate.HOLDOUT, gate.SHADOW):
        if challenger.tags.get(TAG_GATE + name) == refused:
            reason = challenger.tags.get(TAG_GATE + name + REASON_SUFFIX, f"{name} gate refused")
            raise GateRefused(f"{challenger.label}: {reason}")


def promote(settings: Settings) -> Moved:
    """Make the challenger champion, if it passed both gates against the current champion."""
    registry = open_registry(settings)
    champion = registry.require(CHAMPION)
    challenger = registry.require(CHALLENGER)
    check_not_refused(challenger, champion)
    pending = gates_pending(challenger, champion)
    if pending:
        raise GateRefused(
            f"{challenger.label} has not passed the {' and '.join(pending)} gate(s) against "
            f"champion {champion.label}; run `churnstream model compare` / `model shadow`"
        )
    history = registry.history() or [champion.number]
    final = _serve(registry, challenger, settings.model.models_dir, history=history)
    registry.delete_alias(CHALLENGER)
    registry.log_step(
        "promote",
        experiment=EXPERIMENT,
        params={"previous": champion.label, "champion": challenger.label},
    )
    return Moved(champion, challenger, final)


def rollback(settings: Settings) -> Moved:
    """Move ``champion`` back to the version that served before it."""
    registry = open_registry(settings)
    champion = registry.require(CHAMPION)
    history = registry.history()
    if champion.number in history:
        history = history[: len(history) - history[::-1].index(champion.number) - 1]
    if not history:
        raise RegistryError(f"champion {champion.label} has no previous champion to roll back to")
    previous = registry.version(history[-1])
    final = _serve(registry, previous, settings.model.models_dir, history=history[:-1])
    registry.tag_version(champion.number, {TAG_ROLLED_BACK_MS: str(int(time.time() * 1000))})
    registry.log_step(
        "rollback",
        experiment=EXPERIMENT,
        params={"from": champion.label, "champion": previous.label},
    )
    return Moved(champion, previous, final)


def _serve(
    registry: Registry, rv: RegisteredVersion, models_dir: Path, *, history: list[str]
) -> Path:
    """Materialise ``rv``, make it champion in the registry, then point ``latest`` at it."""
    final, _ = registry.materialize(rv, models_dir)
    registry.set_alias(CHAMPION, rv.number)
    registry.set_history([*history, rv.number])
    registry.tag_version(rv.number, {TAG_PROMOTED_MS: str(int(time.time() * 1000))})
    metadata = artifacts.read_metadata(final)
    artifacts.write_latest(models_dir, rv.model_version)
    artifacts.write_metrics(models_dir, metadata)
    logger.info("champion is now %s; %s -> %s", rv.label, models_dir / "latest", rv.model_version)
    return final
