"""Backup and restore: the app database, MLflow's database and MLflow's artifacts, into one folder.

    DIR/manifest.json       what was backed up, from where, at which schema revisions
    DIR/app/*.jsonl.gz      every app table (store.dump)
    DIR/mlflow/*.jsonl.gz   every MLflow table
    DIR/artifacts/...       every artifact file (a local folder, or the S3 bucket's prefix)

A restore goes into FRESH stores only: an app database without rows (its schema is migrated to
the backup's revision first) and an MLflow store with no runs and no registered models (its
schema made by MLflow itself, at the same revision as the backup's; the default experiment a
new store creates is replaced). When the artifact root differs (another folder or bucket), every
stored reference to the old root is rewritten to the new one. Models are restored byte for byte,
so their signatures (`modeling.integrity`) verify under the same MODEL_SIGNING_KEY, and the
champion alias comes back with the registry: the restored stack serves the same champion with
the same answers (tests/integration/test_backup.py).

MLflow's backend and artifact root are not forestops settings (only the tracking server knows
them); they are the `--mlflow-backend` and `--mlflow-artifacts` options (env
MLFLOW_BACKEND_STORE_URI and MLFLOW_ARTIFACTS_DESTINATION), defaulting to the embedded shape's
sqlite store and artifact folder in FORESTOPS_HOME.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from sqlalchemy import create_engine

from forestops.config import Settings
from forestops.store import dump
from forestops.store.database import get_engine, upgrade
from forestops.store.schema import metadata

MANIFEST = "manifest.json"
FORMAT = 1
_MLFLOW_CONTENT = ("runs", "registered_models")  # any row here: not a fresh store


class BackupError(RuntimeError):
    """The backup cannot be made or restored as asked (the message says why)."""


@dataclass(frozen=True)
class Stores:
    """Where the three parts live."""

    app_url: str
    mlflow_url: str
    artifacts: str  # a folder path, file:// URI or s3://bucket/prefix

    @classmethod
    def of(
        cls, settings: Settings, mlflow_backend: str | None, mlflow_artifacts: str | None
    ) -> Stores:
        backend = mlflow_backend or settings.mlflow_tracking_uri
        if urlparse(backend).scheme in {"http", "https", "databricks", ""}:
            raise BackupError(
                f"MLflow's database is needed, not {backend!r}: pass --mlflow-backend (the "
                "tracking server's --backend-store-uri, env MLFLOW_BACKEND_STORE_URI)"
            )
        root = mlflow_artifacts or str(settings.mlflow_artifacts_dir)
        return cls(settings.database_url, backend, root)


def backup(stores: Stores, folder: Path) -> dict[str, Any]:
    """Write the three parts into `folder` (which must not hold a backup yet); returns the manifest."""
    if (folder / MANIFEST).exists():
        raise BackupError(f"{folder} already holds a backup")
    app_engine = get_engine(stores.app_url)
    mlflow_engine = create_engine(stores.mlflow_url)
    try:
        manifest = {
            "format": FORMAT,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "forestops": version("forestops"),
            "mlflow": version("mlflow"),
            "app": {
                "revision": dump.schema_revision(app_engine),
                "rows": dump.dump(app_engine, folder / "app"),
            },
            "mlflow_store": {
                "revision": dump.schema_revision(mlflow_engine),
                "rows": dump.dump(mlflow_engine, folder / "mlflow"),
            },
            "artifacts": {
                "root": _root_uri(stores.artifacts),
                "files": _copy_out(stores.artifacts, folder / "artifacts"),
            },
        }
    finally:
        mlflow_engine.dispose()
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def restore(stores: Stores, folder: Path) -> dict[str, Any]:
    """Load the backup in `folder` into fresh stores; returns the manifest."""
    try:
        manifest: dict[str, Any] = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        raise BackupError(f"no backup in {folder} ({MANIFEST} missing)") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(f"backup format {manifest.get('format')} is not {FORMAT}")
    _restore_app(stores.app_url, folder / "app", manifest["app"])
    new_root = _root_uri(stores.artifacts)
    old_root = manifest["artifacts"]["root"]
    _restore_mlflow(
        stores.mlflow_url, new_root, folder / "mlflow", manifest["mlflow_store"], old_root
    )
    _copy_in(folder / "artifacts", stores.artifacts)
    return manifest


def _restore_app(url: str, folder: Path, part: dict[str, Any]) -> None:
    engine = get_engine(url)
    if any(dump.row_counts(engine).values()):
        raise BackupError("the app database is not empty: restore goes into a fresh one")
    if part["revision"]:
        upgrade(url, part["revision"])
    dump.load(engine, folder, order=[table.name for table in metadata.sorted_tables])


def _restore_mlflow(
    url: str, artifact_root: str, folder: Path, part: dict[str, Any], old_root: str
) -> None:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    SqlAlchemyStore(url, artifact_root)  # MLflow makes its own schema (and a default experiment)
    engine = create_engine(url)
    try:
        revision = dump.schema_revision(engine)
        if revision != part["revision"]:
            raise BackupError(
                f"MLflow's schema here is at {revision}, the backup's at {part['revision']}: "
                "restore with the MLflow version that made it"
            )
        counts = dump.row_counts(engine)
        if any(counts.get(table) for table in _MLFLOW_CONTENT):
            raise BackupError("the MLflow store has runs or models: restore goes into a fresh one")
        dump.clear(engine, list(counts))
        rewrite = None if old_root == artifact_root else _prefix_rewriter(old_root, artifact_root)
        dump.load(engine, folder, rewrite=rewrite)
    finally:
        engine.dispose()


def _prefix_rewriter(old: str, new: str) -> Any:
    def rewrite(value: str) -> str:
        return new + value[len(old) :] if value.startswith(old) else value

    return rewrite


def _root_uri(root: str) -> str:
    """An artifact root as MLflow writes it into its tables (file:// URIs for folders)."""
    if urlparse(root).scheme in {"s3", "file"}:
        return root.rstrip("/")
    return Path(root).expanduser().resolve().as_uri()


# --- artifact files ------------------------------------------------------------------------------


def _copy_out(root: str, target: Path) -> int:
    target.mkdir(parents=True, exist_ok=True)
    if urlparse(root).scheme == "s3":
        bucket, prefix = _bucket(root)
        count = 0
        for key in _s3_keys(bucket, prefix):
            path = target / key[len(prefix) :].lstrip("/")
            path.parent.mkdir(parents=True, exist_ok=True)
            _s3().download_file(bucket, key, str(path))
            count += 1
        return count
    source = _local(root)
    if source.exists():
        shutil.copytree(source, target, dirs_exist_ok=True)
    return sum(1 for path in target.rglob("*") if path.is_file())


def _copy_in(source: Path, root: str) -> None:
    if urlparse(root).scheme == "s3":
        bucket, prefix = _bucket(root)
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            relative = path.relative_to(source).as_posix()
            _s3().upload_file(str(path), bucket, f"{prefix}/{relative}" if prefix else relative)
        return
    shutil.copytree(source, _local(root), dirs_exist_ok=True)


def _local(root: str) -> Path:
    parsed = urlparse(root)
    return Path(parsed.path) if parsed.scheme == "file" else Path(root).expanduser()


def _bucket(root: str) -> tuple[str, str]:
    parsed = urlparse(root)
    return parsed.netloc, parsed.path.strip("/")


def _s3() -> Any:
    """boto3 as MLflow configures it: MLFLOW_S3_ENDPOINT_URL and the AWS_* variables."""
    import os

    import boto3

    return boto3.client("s3", endpoint_url=os.environ.get("MLFLOW_S3_ENDPOINT_URL"))


def _s3_keys(bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    pages = _s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    for page in pages:
        keys += [item["Key"] for item in page.get("Contents", [])]
    return keys
