"""The MLflow Model Registry as churnstream uses it: one registered model, two aliases.

A registered version is logged with ``mlflow.sklearn.log_model(serialization_format="skops",
skops_trusted_types=TRUSTED_TYPES)`` (no pickle anywhere), and carries the trainer's own
``model.skops``, ``metadata.json`` and ``compiled.npz`` byte for byte as the model's
``extra_files``: those
are what :meth:`Registry.materialize` turns back into a ``models/<version>/`` directory, so
the serving model is verified exactly as ``churnstream train`` wrote it (sha256, trusted
types, smoke prediction). MLflow-native tools can load the skops flavour directly.

Aliases: ``champion`` serves, ``challenger`` is the candidate. The registered model's tag
``churnstream.champion_history`` lists the champions' version numbers in the order they
served, which ``model rollback`` walks back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from churnstream import __version__
from churnstream.exceptions import ChurnstreamError, ModelLoadError
from churnstream.model import artifacts, skops_io, tracking
from churnstream.model.scorer import Scorer
from churnstream.schemas import FEATURE_COLUMNS

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

logger = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
EXTRA_FILES_DIR = "extra_files"
LOGGED_MODEL_NAME = "model"
TAG_VERSION = tracking.VERSION_TAG
TAG_SCHEMA = "churnstream.feature_schema"
TAG_REGISTERED_MS = "churnstream.registered_ms"
TAG_STEP = "churnstream.step"
TAG_HISTORY = "churnstream.champion_history"
#: MLflow's HTTP client retries an unreachable server for minutes by default; a gate step
#: should say "unreachable" within seconds (the user may set these themselves).
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}

T = TypeVar("T")


class RegistryError(ChurnstreamError):
    """The registry is unreachable, or holds nothing usable where churnstream looks."""


def schema_fingerprint(names: list[str] | tuple[str, ...]) -> str:
    """A short, stable name for a feature schema (the ordered column names)."""
    return hashlib.sha256(",".join(names).encode()).hexdigest()[:16]


CURRENT_SCHEMA = schema_fingerprint(FEATURE_COLUMNS)


def version_files(metadata: Mapping[str, Any]) -> list[str]:
    """The files a scorer loads from a version directory: the model, its metadata and, when
    training exported them, its compiled arrays."""
    names = [artifacts.MODEL_FILE, artifacts.METADATA_FILE]
    compiled = metadata.get(artifacts.COMPILED_KEY)
    if isinstance(compiled, dict) and compiled.get("file"):
        names.append(str(compiled["file"]))
    return names


@dataclass(frozen=True)
class RegisteredVersion:
    """One version of the registered model, as churnstream reads it."""

    name: str
    number: str
    model_version: str
    run_id: str
    tags: dict[str, str]

    @property
    def label(self) -> str:
        """``v3 (20260101T000000Z-logreg)``: the registry's number and churnstream's name."""
        return f"v{self.number} ({self.model_version})"


class Registry:
    """One registered model in one MLflow registry (tracking URI = registry URI)."""

    def __init__(self, name: str, tracking_uri: str | None = None, *, create: bool = False):
        for key, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(key, value)
        self.name = name
        self.uri = tracking.resolve_tracking_uri(tracking_uri)
        tracking.require_mlflow()
        if not create:
            path = tracking.file_store_path(self.uri)
            if path is not None and not path.is_dir():
                raise RegistryError(
                    f"registry unreachable: no MLflow file store at {path} (tracking URI "
                    f"{self.uri}); register a model first or set promotion.tracking_uri"
                )
        import mlflow
        from mlflow.tracking import MlflowClient

        mlflow.set_tracking_uri(self.uri)
        mlflow.set_registry_uri(self.uri)
        self.client: MlflowClient = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    def _call(self, what: str, func: Callable[[], T]) -> T:
        """``func()``, any MLflow or network failure as one RegistryError line."""
        try:
            return func()
        except ChurnstreamError:
            raise
        except Exception as exc:  # noqa: BLE001 - MLflow raises many kinds; all mean "failed"
            message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            first = str(message).strip().splitlines()[0] if str(message).strip() else ""
            raise RegistryError(f"registry {self.uri}: {what} failed: {first[:300]}") from exc

    # -- reading ---------------------------------------------------------------------------

    def alias(self, alias: str) -> RegisteredVersion | None:
        """The version holding ``alias``, or None (also when the model is not registered)."""
        from mlflow.exceptions import MlflowException

        def get() -> RegisteredVersion | None:
            try:
                mv = self.client.get_model_version_by_alias(self.name, alias)
            except MlflowException as exc:
                if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                    return None
                raise
            return self._version(mv)

        return self._call(f"reading alias {alias!r} of {self.name!r}", get)

    def require(self, alias: str) -> RegisteredVersion:
        """The version holding ``alias``; RegistryError saying which is missing otherwise."""
        found = self.alias(alias)
        if found is None:
            hint = (
                "register one with `churnstream model register --bootstrap`"
                if alias == CHAMPION
                else "train one and `churnstream model register` it"
            )
            raise RegistryError(f"no {alias} for {self.name!r} at {self.uri}; {hint}")
        return found

    def version(self, number: str) -> RegisteredVersion:
        return self._call(
            f"reading version {number} of {self.name!r}",
            lambda: self._version(self.client.get_model_version(self.name, number)),
        )

    def _version(self, mv: Any) -> RegisteredVersion:
        tags = dict(mv.tags or {})
        return RegisteredVersion(
            name=self.name,
            number=str(mv.version),
            model_version=tags.get(TAG_VERSION, ""),
            run_id=str(mv.run_id or ""),
            tags=tags,
        )

    def history(self) -> list[str]:
        """The champions' version numbers, oldest first."""
        model = self._call(
            f"reading {self.name!r}", lambda: self.client.get_registered_model(self.name)
        )
        raw = (model.tags or {}).get(TAG_HISTORY, "[]")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = None
        if not isinstance(value, list):
            raise RegistryError(f"{self.name!r}: tag {TAG_HISTORY} is not a JSON list: {raw!r}")
        return [str(v) for v in value]

    # -- writing ---------------------------------------------------------------------------

    def set_history(self, numbers: list[str]) -> None:
        self._call(
            f"tagging {self.name!r}",
            lambda: self.client.set_registered_model_tag(
                self.name, TAG_HISTORY, json.dumps(numbers)
            ),
        )

    def set_alias(self, alias: str, number: str) -> None:
        self._call(
            f"setting alias {alias!r} on v{number}",
            lambda: self.client.set_registered_model_alias(self.name, alias, number),
        )

    def delete_alias(self, alias: str) -> None:
        self._call(
            f"deleting alias {alias!r}",
            lambda: self.client.delete_registered_model_alias(self.name, alias),
        )

    def tag_version(self, number: str, tags: Mapping[str, str]) -> None:
        def tag() -> None:
            for key, value in tags.items():
                self.client.set_model_version_tag(self.name, number, key, value)

        self._call(f"tagging v{number}", tag)

    def log_step(
        self,
        step: str,
        *,
        experiment: str,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
        failed: bool = False,
    ) -> str:
        """One MLflow run for one lifecycle step (register, compare, shadow, promote, ...)."""
        from mlflow.entities import Metric, Param

        def log() -> str:
            found = self.client.get_experiment_by_name(experiment)
            experiment_id = (
                found.experiment_id
                if found is not None
                else self.client.create_experiment(experiment)
            )
            all_tags = {TAG_STEP: step, tracking.PACKAGE_VERSION_TAG: __version__, **(tags or {})}
            run = self.client.create_run(experiment_id, tags=all_tags, run_name=step)
            now = int(time.time() * 1000)
            self.client.log_batch(
                run.info.run_id,
                metrics=[Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()],
                params=[Param(k, str(v)[:500]) for k, v in (params or {}).items()],
            )
            self.client.set_terminated(run.info.run_id, status="FAILED" if failed else "FINISHED")
            return str(run.info.run_id)

        return self._call(f"logging the {step} run", log)

    def register(self, version_dir: Path, *, experiment: str) -> RegisteredVersion:
        """Log ``version_dir``'s model (skops flavour + its own files) and register it."""
        import mlflow
        import mlflow.sklearn
        import sklearn
        import skops

        metadata = artifacts.read_metadata(version_dir)
        version = str(metadata["version"])
        names = metadata["feature_schema"].get("names") or []
        pipeline = skops_io.load_pipeline(version_dir, str(metadata["model_sha256"]))

        def log() -> RegisteredVersion:
            mlflow.set_experiment(experiment)
            with mlflow.start_run(run_name=f"register {version}") as run:
                mlflow.log_params(tracking.run_params(metadata))
                mlflow.log_metrics(tracking.run_metrics(metadata))
                mlflow.set_tags(
                    {
                        TAG_STEP: "register",
                        TAG_VERSION: version,
                        tracking.PACKAGE_VERSION_TAG: __version__,
                    }
                )
                info = mlflow.sklearn.log_model(
                    pipeline,
                    name=LOGGED_MODEL_NAME,
                    serialization_format="skops",
                    skops_trusted_types=list(skops_io.TRUSTED_TYPES),
                    registered_model_name=self.name,
                    extra_files=[str(version_dir / name) for name in version_files(metadata)],
                    # Given, so that MLflow does not load the model in a subprocess to guess.
                    pip_requirements=[
                        f"scikit-learn=={sklearn.__version__}",
                        f"skops=={skops.__version__}",
                        f"churnstream=={__version__}",
                    ],
                )
                number = str(info.registered_model_version)
                tags = {
                    TAG_VERSION: version,
                    TAG_SCHEMA: schema_fingerprint(names),
                    TAG_REGISTERED_MS: str(int(time.time() * 1000)),
                }
                for key, value in tags.items():
                    self.client.set_model_version_tag(self.name, number, key, value)
                return RegisteredVersion(self.name, number, version, run.info.run_id, tags)

        registered = self._call(f"registering {version}", log)
        logger.info("registered %s as %s v%s", version, self.name, registered.number)
        return registered

    def materialize(self, rv: RegisteredVersion, models_dir: Path) -> tuple[Path, Scorer]:
        """``models_dir/<version>/`` holding ``rv``'s model, and that model loaded from it.

        The feature schema is checked first, from the version's tag; the files are
        downloaded into a staging directory and loaded (trusted types, sha256, smoke
        prediction) before they are renamed into place. An existing directory of that name
        is reused only if it holds the same model file. Nothing else in ``models_dir``
        changes: ``latest`` is the caller's to move.
        """
        schema = rv.tags.get(TAG_SCHEMA)
        if schema != CURRENT_SCHEMA:
            raise RegistryError(
                f"{self.name} {rv.label} has feature schema {schema or 'unknown'}, this "
                f"churnstream scores {CURRENT_SCHEMA} ({len(FEATURE_COLUMNS)} features); "
                "refusing it"
            )
        if not rv.model_version or "/" in rv.model_version or rv.model_version.startswith("."):
            raise RegistryError(f"{self.name} {rv.label} has no usable {TAG_VERSION} tag")
        models_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(
            tempfile.mkdtemp(prefix=f"{artifacts.STAGING_PREFIX}registry-", dir=models_dir)
        )
        try:
            source = self._call(
                f"locating {rv.label}",
                lambda: self.client.get_model_version_download_uri(self.name, rv.number),
            )
            import mlflow

            local = Path(
                self._call(
                    f"downloading {rv.label}",
                    lambda: mlflow.artifacts.download_artifacts(
                        artifact_uri=f"{str(source).rstrip('/')}/{EXTRA_FILES_DIR}",
                        dst_path=str(staging),
                    ),
                )
            )
            try:
                scorer = Scorer.load(local)
            except ModelLoadError as exc:
                raise RegistryError(f"{self.name} {rv.label} fails to load: {exc}") from exc
            if scorer.version != rv.model_version:
                raise RegistryError(
                    f"{self.name} {rv.label}: metadata.json names {scorer.version!r}"
                )
            final = models_dir / rv.model_version
            if final.exists():
                _check_same(final, scorer.metadata, rv)
            else:
                local.chmod(artifacts.DIR_MODE)
                os.replace(local, final)
                scorer.path = final
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return final, scorer


def _check_same(existing: Path, metadata: Mapping[str, Any], rv: RegisteredVersion) -> None:
    try:
        current = artifacts.read_metadata(existing)
        same = current.get("model_sha256") == metadata.get("model_sha256")
        if same:
            Scorer.load(existing)
    except ModelLoadError as exc:
        raise RegistryError(f"{existing} exists but fails to load: {exc}") from exc
    if not same:
        raise RegistryError(
            f"{existing} exists and holds another model than {rv.name} {rv.label}; "
            "refusing to overwrite a model version"
        )
