"""The model registry: MLflow's, with a ``champion`` alias that workers follow.

A trained model is logged as an MLflow run (its metrics, parameters and checkpoint) and
registered as a new version of ``settings.scoring.model_name``. The version becomes the
champion only if it beats the current champion on the same validation window, unless
forced. Every change of champion is remembered on the registered model, so a rollback
returns to the one before.

Beside the champion a version can be the ``challenger``, in a mode (shadow, ab,
interleave) with a weight (``scorers.challenge``), kept as one tag of the registered
model (and mirrored by an alias); workers follow it as they follow the champion.

Locally the registry is a sqlite file with an artifact folder in ``settings.home``; set
``SHOPSTREAM_REGISTRY_URI`` to a tracking server in production.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from scorers.challenge import Challenge
from shopstream.settings import Settings, registry_uri

log = logging.getLogger(__name__)
# MLflow's sqlite store trips SQLAlchemy's deprecation of ``noload`` at every start, and
# announces the tables it creates; downloads draw a progress bar: none of it means
# anything to whoever runs shopstream.
warnings.filterwarnings("ignore", message=r"The ``noload`` loader strategy is deprecated", category=DeprecationWarning)
logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per download of a few MB
CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG = "champion_history"  # comma-separated versions, oldest first
CHALLENGE_TAG = "challenge"  # {"version", "mode", "weight", "salt"} as JSON: one write, read whole


@dataclass(frozen=True)
class Version:
    version: str
    aliases: tuple[str, ...]
    metrics: dict[str, float]
    tags: dict[str, str]
    source: str
    created_ms: int


def metric_name(key: str) -> str:
    """A metric's name as MLflow stores it.

    >>> metric_name("mrr@20")
    'mrr_at_20'
    """
    return key.replace("@", "_at_")


def create_sqlite_registry(path: Path) -> None:
    """Create the local registry database at ``path`` once, whole or not at all.

    MLflow creates its tables on first use, and a process killed while its migrations run
    leaves a database that cannot be opened again ("table _alembic_tmp_... already
    exists"). Workers open the registry from several threads and processes at once, so it
    is made under a file lock, in a temporary file renamed into place.
    """
    import os

    from filelock import FileLock
    from mlflow import MlflowClient

    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{path}.lock"):
        if path.exists():  # made by whoever held the lock before us
            return
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        partial.unlink(missing_ok=True)
        uri = f"sqlite:///{partial}"
        MlflowClient(tracking_uri=uri, registry_uri=uri).search_registered_models()  # runs the migrations
        os.replace(partial, path)


class Registry:
    """Register, list, promote and roll back versions of one model."""

    def __init__(self, settings: Settings, name: str | None = None):
        import mlflow
        from mlflow import MlflowClient

        self.settings = settings
        self.name = name or settings.scoring.model_name
        self.uri = registry_uri(settings)
        self._mlflow = mlflow
        if self.uri.startswith("sqlite:///"):
            create_sqlite_registry(Path(self.uri.removeprefix("sqlite:///")))
        self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    # --- writing ---------------------------------------------------------------------

    def _experiment(self) -> str:
        experiment = self.client.get_experiment_by_name(self.name)
        if experiment is not None:
            return experiment.experiment_id
        artifacts = None
        if self.uri.startswith("sqlite:"):  # local: artifacts beside the database
            artifacts = (self.settings.home.resolve() / "mlartifacts").as_uri()
        return self.client.create_experiment(self.name, artifact_location=artifacts)

    def register(self, checkpoint: Path, *, metrics: dict[str, float], params: dict[str, object],
                 tags: dict[str, str], description: str = "shopstream fraud scorer") -> Version:
        """Log a run with ``checkpoint`` and register it as a new version."""
        run = self.client.create_run(self._experiment(), tags={"model": self.name, **tags})
        run_id = run.info.run_id
        for key, value in metrics.items():  # MLflow allows no "@" in names: hr@20 -> hr_at_20
            self.client.log_metric(run_id, metric_name(key), float(value))
        for key, value in params.items():
            self.client.log_param(run_id, key, str(value)[:500])
        tags = {**tags, DIGEST_TAG: file_digest(checkpoint)}  # checked before anything parses it
        self.client.log_artifact(run_id, str(checkpoint), artifact_path="model")
        self.client.set_terminated(run_id)
        if not self.client.search_registered_models(f"name='{self.name}'"):
            self.client.create_registered_model(self.name, description=description)
        created = self.client.create_model_version(
            self.name, source=f"{run.info.artifact_uri}/model", run_id=run_id,
            tags={**tags, **{f"metric.{metric_name(k)}": f"{float(v):.6g}" for k, v in metrics.items()}})
        log.info("registered %s version %s", self.name, created.version)
        return self.get(created.version)

    def promote(self, version: str) -> None:
        """Make ``version`` the champion; a challenge of that version ends with it."""
        self.get(version)  # fails clearly for an unknown version
        self.client.set_registered_model_alias(self.name, CHAMPION, str(version))
        history = [v for v in self._history() if v] + [str(version)]
        self.client.set_registered_model_tag(self.name, HISTORY_TAG, ",".join(history[-50:]))
        challenge = self.challenge()
        if challenge is not None and challenge.version == str(version):
            self.end_challenge()

    def challenge_with(self, version: str, mode: str, weight: float = 0.0) -> Challenge:
        """Make ``version`` the challenger in ``mode`` (replacing any challenger)."""
        self.get(version)  # fails clearly for an unknown version
        champion = self.champion()
        if champion is not None and champion.version == str(version):
            raise ValueError(f"version {version} is the champion of {self.name}; it cannot challenge itself")
        challenge = Challenge(str(version), mode, weight if mode != "shadow" else 0.0,
                              str(int(time.time() * 1000)))
        # One tag holds the whole challenge, so a worker reading meanwhile sees the old one
        # or the new one, never a new mode with an old split. The alias mirrors it.
        self.client.set_registered_model_tag(self.name, CHALLENGE_TAG, json.dumps(asdict(challenge)))
        self.client.set_registered_model_alias(self.name, CHALLENGER, challenge.version)
        return challenge

    def end_challenge(self) -> str | None:
        """End the challenge; return the version that was the challenger, if any."""
        challenge = self.challenge()
        if challenge is None:
            return None
        self.client.delete_registered_model_tag(self.name, CHALLENGE_TAG)
        self.client.delete_registered_model_alias(self.name, CHALLENGER)
        return challenge.version

    def rollback(self) -> str:
        """Return the champion alias to the previous champion; return its version."""
        history = self._history()
        current = self.champion()
        while history and current is not None and history[-1] == current.version:
            history.pop()
        if not history:
            raise LookupError(f"{self.name} has no earlier champion to roll back to")
        previous = history[-1]
        self.client.set_registered_model_alias(self.name, CHAMPION, previous)
        self.client.set_registered_model_tag(self.name, HISTORY_TAG, ",".join(history))
        return previous

    # --- reading ---------------------------------------------------------------------

    def _history(self) -> list[str]:
        try:
            model = self.client.get_registered_model(self.name)
        except self._mlflow.exceptions.MlflowException:
            return []
        return [v for v in model.tags.get(HISTORY_TAG, "").split(",") if v]

    def get(self, version: str) -> Version:
        mv = self.client.get_model_version(self.name, str(version))
        metrics = self.client.get_run(mv.run_id).data.metrics if mv.run_id else {}
        return Version(str(mv.version), tuple(mv.aliases), metrics, dict(mv.tags), mv.source,
                       mv.creation_timestamp)

    def versions(self) -> list[Version]:
        """Every version, newest first."""
        found = self.client.search_model_versions(f"name='{self.name}'")
        return sorted((self.get(v.version) for v in found), key=lambda v: -int(v.version))

    def champion(self) -> Version | None:
        """The current champion, or None when there is none (or no registry yet)."""
        try:
            return self.get(self.client.get_model_version_by_alias(self.name, CHAMPION).version)
        except self._mlflow.exceptions.MlflowException:
            return None

    def challenge(self) -> Challenge | None:
        """The challenger, its mode and weight, or None when there is none."""
        try:
            model = self.client.get_registered_model(self.name)
        except self._mlflow.exceptions.MlflowException:
            return None
        written = model.tags.get(CHALLENGE_TAG)
        return None if written is None else Challenge(**json.loads(written))

    def download(self, version: Version) -> Path:
        """The checkpoint file of ``version``, checked against the digest recorded when it
        was registered, before torch or faiss parse a byte of it.

        Each version gets one folder under ``home/models/<name>/``, reused while its file
        is intact; only the two newest versions' folders are kept, so a worker that keeps
        retrying a broken champion does not fill the disk. A file whose digest differs
        raises ``CorruptModel``, and so does a version registered without a digest unless
        ``allow_undigested_models`` is set.
        """
        root = self.settings.home.resolve() / "models" / self.name
        folder = root / f"v{int(version.version)}"
        expected = version.tags.get(DIGEST_TAG)
        cached = sorted(folder.glob("*.pt")) if folder.is_dir() else []
        if not (cached and expected and file_digest(cached[0]) == expected):
            root.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".v{int(version.version)}-", dir=root))
            try:
                self._mlflow.artifacts.download_artifacts(
                    artifact_uri=version.source, dst_path=str(staging), tracking_uri=self.uri)
                shutil.rmtree(folder, ignore_errors=True)
                staging.rename(folder)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        self._prune(root, keep=folder)
        files = sorted(folder.rglob("*.pt"))
        if not files:
            raise FileNotFoundError(f"{self.name} version {version.version} has no checkpoint")
        if expected is None:
            if not self.settings.allow_undigested_models:
                raise CorruptModel(f"{self.name} version {version.version} was registered without a digest "
                                   f"(tag {DIGEST_TAG!r}); refusing to load it unchecked. Register it again "
                                   f"with shopstream, or set SHOPSTREAM_ALLOW_UNDIGESTED_MODELS=true")
            log.warning("%s version %s was registered without a digest; loading it unchecked, as "
                        "allow_undigested_models says", self.name, version.version)
        elif (found := file_digest(files[0])) != expected:
            raise CorruptModel(f"{self.name} version {version.version}: the file's SHA-256 is "
                               f"{found[:12]}…, not the {expected[:12]}… registered")
        return files[0]

    @staticmethod
    def _prune(root: Path, keep: Path, versions: int = 2) -> None:
        """Remove all but the newest ``versions`` version folders (``keep`` among them),
        and staging folders that a killed download left."""
        folders = sorted((p for p in root.iterdir() if p.is_dir() and p.name.startswith("v")),
                         key=lambda p: int(p.name[1:]) if p.name[1:].isdigit() else -1)
        others = [path for path in folders if path != keep]
        kept = {keep, *others[len(others) - (versions - 1):]}
        for path in folders:
            if path not in kept:
                shutil.rmtree(path, ignore_errors=True)
        for path in root.glob(".v*-*"):
            if time.time() - path.stat().st_mtime > 3600:
                shutil.rmtree(path, ignore_errors=True)


DIGEST_TAG = "sha256"


class CorruptModel(ValueError):
    """A downloaded checkpoint whose bytes are not the ones registered."""


def file_digest(path: Path) -> str:
    """SHA-256 of a file, hex."""
    import hashlib

    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()
