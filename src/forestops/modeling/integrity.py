"""Model integrity: nothing is unpickled unless the training job's key vouches for its every byte.

A model's files are pickles, and loading a pickle runs whatever code it names, so whoever can
write to the model registry (or the artifact bucket, or the serving cache) could otherwise run
code in every process that loads the champion: the inference service, the training gate, the
monitor. Training therefore signs each model it logs: a manifest of every file of the model's
artifact directory (sorted relative paths, SHA-256 of each file) is digested, and the digest is
authenticated with HMAC-SHA256 under `MODEL_SIGNING_KEY`. The result is a run tag (and a
version tag once registered): `v1:<manifest digest>:<hmac>`.

The tag is only a carrier: a registry writer can write any tag, but cannot compute the HMAC of
a manifest without the key, so a forged, copied or stale tag fails here. Every loader downloads
the files, recomputes the manifest from what is on its own disk, checks the HMAC (constant-time)
and only then loads those same local files. Training also records each signature in the app
database (`model_signatures`): an independent ledger of what training produced, which a registry
writer cannot touch; loading does not depend on it, so a service can start from its disk cache
while the database is down.

The key: `MODEL_SIGNING_KEY` when set (training, inference and monitor must share it). Unset,
the embedded shape (an MLflow store in a local file) generates a random key once in
`FORESTOPS_HOME/model-signing.key` (mode 0600), so `forestops up` needs no configuration; with a
tracking server the processes are on different hosts, so an unset key is an error, never a
silent acceptance.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from forestops.config import Settings
from forestops.modeling.tracking import MODEL_ARTIFACT, TAG_SIGNATURE, ServingModelRef

if TYPE_CHECKING:
    from mlflow.pyfunc import PyFuncModel
    from mlflow.tracking import MlflowClient

KEY_FILE = "model-signing.key"
MIN_KEY_LENGTH = 32
_VERSION = "v1"
_DOMAIN = b"forestops model manifest v1\0"  # a MAC made for anything else never verifies here
_LOCAL_STORES = {"", "file", "sqlite"}
_HEX64 = re.compile(r"[0-9a-f]{64}")


class SigningKeyError(RuntimeError):
    """No usable MODEL_SIGNING_KEY: nothing can be signed or verified (a configuration error)."""


class ModelIntegrityError(Exception):
    """The model's files are not the ones a training job holding the key signed: never load them."""


def signing_key(settings: Settings) -> bytes:
    """The HMAC key; raises SigningKeyError when there is none to use (see the module docstring)."""
    if settings.model_signing_key is not None:
        return _checked(settings.model_signing_key.get_secret_value(), "MODEL_SIGNING_KEY")
    scheme = urlparse(settings.mlflow_tracking_uri).scheme.split("+")[0]
    if scheme not in _LOCAL_STORES:
        raise SigningKeyError(
            "MODEL_SIGNING_KEY is not set: with a tracking server, training, the inference "
            "service and the monitor must share one key to sign and verify models "
            "(generate one with `openssl rand -hex 32`)"
        )
    return _local_key(settings.forestops_home / KEY_FILE)


def _checked(value: str, source: str) -> bytes:
    value = value.strip()
    if len(value) < MIN_KEY_LENGTH:
        raise SigningKeyError(
            f"{source} has {len(value)} characters; at least {MIN_KEY_LENGTH} are needed "
            "(generate one with `openssl rand -hex 32`)"
        )
    return value.encode()


def _local_key(path: Path) -> bytes:
    """Read the embedded key, creating it first if needed; concurrent first users agree on one."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_hex(32))
        try:
            os.link(temporary, path)  # atomic and never replaces: the first creator wins
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
    return _checked(path.read_text(), str(path))


# MLflow writes this file into a model's folder whenever it is downloaded by a `models:/` URI,
# and in a local file store the download is the stored folder itself: one
# `mlflow.pyfunc.load_model("models:/forest-cover@champion")` on the embedded store would change
# the champion's files. MLflow never reads it back (it records the name and version for the
# caller), so it is not part of the model; only its own shape is admitted.
_MLFLOW_META = "registered_model_meta"
_MLFLOW_META_TEXT = re.compile(rb"model_name: [^\n]{1,256}\nmodel_version: [^\n]{1,32}\n")


def manifest_digest(directory: Path) -> str:
    """SHA-256 of the sorted (relative path, SHA-256) list of every file under `directory`,
    MLflow's own `registered_model_meta` at the top left out."""
    entries: list[tuple[str, str]] = []
    for path in directory.rglob("*"):
        relative = path.relative_to(directory).as_posix()
        if relative == _MLFLOW_META and _mlflow_meta(path):
            continue
        if path.is_symlink():
            raise ModelIntegrityError(f"{relative} is a symbolic link")
        if path.is_file():
            with path.open("rb") as file:
                entries.append((relative, hashlib.file_digest(file, "sha256").hexdigest()))
        elif not path.is_dir():
            raise ModelIntegrityError(f"{relative} is not a regular file")
    if not entries:
        raise ModelIntegrityError("it has no files")
    listing = json.dumps(sorted(entries), separators=(",", ":")).encode()
    return hashlib.sha256(listing).hexdigest()


def _mlflow_meta(path: Path) -> bool:
    """Whether `path` is a regular file holding what MLflow writes there, and only that."""
    if path.is_symlink() or not path.is_file() or path.stat().st_size > 512:
        return False
    return _MLFLOW_META_TEXT.fullmatch(path.read_bytes()) is not None


def _mac(key: bytes, digest: str) -> str:
    return hmac.new(key, _DOMAIN + digest.encode(), hashlib.sha256).hexdigest()


def sign_files(key: bytes, directory: Path) -> tuple[str, str]:
    """(manifest digest, signature tag value) of the model files in `directory`."""
    digest = manifest_digest(directory)
    return digest, f"{_VERSION}:{digest}:{_mac(key, digest)}"


def verify_files(key: bytes, directory: Path, signature: str | None) -> str:
    """Return the manifest digest of `directory` if `signature` vouches for it; else raise
    ModelIntegrityError saying why. Reads the files, never deserialises them."""
    if not signature:
        raise ModelIntegrityError(
            f"it has no {TAG_SIGNATURE} tag: no forestops training job signed it"
        )
    version, _, rest = signature.partition(":")
    signed, _, mac = rest.partition(":")
    if version != _VERSION or not _HEX64.fullmatch(signed) or not _HEX64.fullmatch(mac):
        raise ModelIntegrityError(f"its {TAG_SIGNATURE} tag is malformed")
    if not hmac.compare_digest(mac, _mac(key, signed)):
        raise ModelIntegrityError(
            f"its {TAG_SIGNATURE} was not made with this MODEL_SIGNING_KEY "
            "(forged, or signed under another key)"
        )
    actual = manifest_digest(directory)
    if not hmac.compare_digest(actual, signed):
        raise ModelIntegrityError(
            f"its files are not the ones training signed (manifest digest {actual[:12]}, "
            f"signed {signed[:12]}): changed or replaced after training"
        )
    return actual


def model_files_uri(settings: Settings, client: MlflowClient, ref: ServingModelRef) -> str:
    """Where the model's files are, asked of this client (MLflow's `models:/` resolver would
    use the process-global registry URI)."""
    if ref.version is not None:
        return str(client.get_model_version_download_uri(settings.model_name, ref.version))
    experiment_id = client.get_run(ref.run_id).info.experiment_id
    models = client.search_logged_models(
        experiment_ids=[experiment_id],
        filter_string=f"source_run_id = '{ref.run_id}' AND name = '{MODEL_ARTIFACT}'",
        max_results=1,
    )
    if not models:
        raise FileNotFoundError(f"run {ref.run_id} has no logged model {MODEL_ARTIFACT!r}")
    return str(models[0].artifact_location)


def download(settings: Settings, artifact_uri: str, destination: Path) -> Path:
    """The files at `artifact_uri`, downloaded into `destination`; returns their local folder."""
    import mlflow

    return Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=artifact_uri,
            dst_path=str(destination),
            tracking_uri=settings.mlflow_tracking_uri,
        )
    )


def sign_logged_model(settings: Settings, client: MlflowClient, model_id: str) -> tuple[str, str]:
    """Sign a model just logged and tag its run; returns (manifest digest, signature).

    Computed on the files as the store holds them (downloaded back: exactly what a loader will
    download).
    """
    key = signing_key(settings)
    model = client.get_logged_model(model_id)
    with tempfile.TemporaryDirectory() as folder:
        digest, signature = sign_files(
            key, download(settings, model.artifact_location, Path(folder))
        )
    if model.source_run_id:
        client.set_tag(model.source_run_id, TAG_SIGNATURE, signature)
    return digest, signature


def load_verified(settings: Settings, client: MlflowClient, ref: ServingModelRef) -> PyFuncModel:
    """Download `ref`'s model, verify it against its signature tag, then load those same files.

    Raises ModelIntegrityError (nothing deserialised) when the files are not what training signed.
    """
    import mlflow

    key = signing_key(settings)
    with tempfile.TemporaryDirectory() as folder:
        local = download(settings, model_files_uri(settings, client, ref), Path(folder))
        verify_files(key, local, ref.tags.get(TAG_SIGNATURE))
        return mlflow.pyfunc.load_model(str(local))
