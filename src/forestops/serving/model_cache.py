"""The serving replica's model cache: every model is downloaded here before it is loaded, and the
last good one is remembered, so a restart with the tracking server down serves from disk.

`<FORESTOPS_HOME>/models/cache/<run_id>/` holds `model/` (the MLflow model's files),
`metadata.json` (the registry's facts at download: version, alias, tags), the compiled forest that
training shipped for this platform under `compiled/<platform key>/` (if any), and a forest compiled
here (`forest-*.so` and its verdict). `current.json` names the run served last. A half download
never counts: files land in a staging folder that is renamed into place.
"""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from dataclasses import fields
from pathlib import Path

from forestops.config import Settings
from forestops.files import write_atomically
from forestops.modeling.integrity import download, model_files_uri
from forestops.modeling.tracking import MODEL_ARTIFACT, ServingModelRef
from forestops.serving.served_model import describe, short
from forestops.serving.shipped_forest import ARTIFACT_ROOT, fetch, platform_key

log = logging.getLogger(__name__)

_KEEP_CACHED = 2  # the model served and the one before it (a rollback needs no download)
_METADATA = "metadata.json"


class ModelCache:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.models_dir / "cache"

    def download(self, ref: ServingModelRef) -> Path:
        """The model's files in the cache (downloaded once per run)."""
        from mlflow.tracking import MlflowClient

        target = self.root / ref.run_id
        if (target / _METADATA).is_file():
            write_json(target / _METADATA, self._metadata(ref))  # version/alias may move
            self._fetch_shipped(ref, target)  # shipped after the model was first downloaded
            return target
        staging = self.root / f".staging-{uuid.uuid4().hex}"
        staging.mkdir(parents=True)
        try:
            client = MlflowClient(self.settings.mlflow_tracking_uri)
            files = model_files_uri(self.settings, client, ref)
            download(self.settings, files, staging).rename(staging / MODEL_ARTIFACT)
            self._fetch_shipped(ref, staging)
            write_json(staging / _METADATA, self._metadata(ref))
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    def _fetch_shipped(self, ref: ServingModelRef, folder: Path) -> None:
        """The compiled forest training shipped for this platform, beside the model; a failed
        download only costs speed (the forest is then compiled here), never the model."""
        if self.settings.inference_runtime != "auto":
            return
        if (folder / ARTIFACT_ROOT / platform_key()).is_dir():
            return
        try:
            fetch(self.settings, ref, folder / ARTIFACT_ROOT)
        except Exception as error:
            log.warning(
                "%s: could not fetch its shipped compiled forest (%s); compiling here instead",
                describe(ref),
                short(error),
            )

    def _metadata(self, ref: ServingModelRef) -> dict[str, object]:
        return {"model_name": self.settings.model_name, "ref": ref.describe()}

    def last_good(self) -> tuple[Path, ServingModelRef] | None:
        """The folder and registry facts of the model served last, if the cache still holds it."""
        try:
            run_id = json.loads((self.root / "current.json").read_text())["run_id"]
            path = self.root / run_id
            metadata = json.loads((path / _METADATA).read_text())
        except (OSError, ValueError, KeyError):
            return None
        if metadata.get("model_name") != self.settings.model_name:
            return None
        names = {f.name for f in fields(ServingModelRef)}
        return path, ServingModelRef(**{k: v for k, v in metadata["ref"].items() if k in names})

    def remember(self, path: Path) -> None:
        """`path` is served now: the model to start from next time; older ones beyond the
        previous are removed."""
        write_json(self.root / "current.json", {"run_id": path.name})
        cached = [p for p in self.root.iterdir() if p.is_dir() and p.name != path.name]
        cached.sort(key=lambda p: p.stat().st_mtime, reverse=True)
        for stale in cached[_KEEP_CACHED - 1 :]:
            shutil.rmtree(stale, ignore_errors=True)


def write_json(path: Path, payload: dict[str, object]) -> None:
    """Replace `path` atomically (a crash mid-write leaves the previous file intact)."""
    write_atomically(path, json.dumps(payload, indent=2, sort_keys=True))
