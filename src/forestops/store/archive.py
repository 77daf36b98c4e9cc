"""Raw payload archive: every payload exactly as received, gzip-compressed, content-addressed.

The archive is what makes a batch replayable (`forestops ingest --replay ID`) and what keeps a
payload when its database transaction failed or it was rejected as malformed. Keys are the
payload's SHA-256, so storing the same bytes twice is one object. Location: a local folder
(embedded shape, default `<home>/artifacts`) or `s3://bucket/prefix` (MinIO in the full stack;
credentials come from boto3's usual chain: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, profiles...).
The URI stored in `ingestion_batches.payload_uri` names the object wherever the archive setting
points later, so old batches stay replayable.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from forestops.files import write_atomically


class ArchiveError(OSError):
    """The payload could not be stored or read back."""


def archive_payload(raw: bytes, store_uri: str, s3_endpoint_url: str | None = None) -> str:
    """Store `raw` under `store_uri` (folder or s3://bucket/prefix); the object's URI."""
    digest = hashlib.sha256(raw).hexdigest()
    key = f"payloads/{digest[:2]}/{digest}.gz"
    body = gzip.compress(raw, mtime=0)  # mtime=0: same bytes in, same object out
    if store_uri.startswith("s3://"):
        bucket, prefix = _split_s3(store_uri)
        uri = f"s3://{bucket}/{prefix}/{key}" if prefix else f"s3://{bucket}/{key}"
        _put_s3(uri, body, s3_endpoint_url)
        return uri
    path = Path(store_uri).expanduser().resolve() / key
    try:
        write_atomically(path, body)
    except OSError as error:
        raise ArchiveError(f"cannot store payload in {path}: {error}") from error
    return path.as_uri()


def read_payload(uri: str, s3_endpoint_url: str | None = None) -> bytes:
    """The raw payload stored at `uri` (as returned by `archive_payload`)."""
    if uri.startswith("s3://"):
        body = _get_s3(uri, s3_endpoint_url)
    else:
        try:
            body = Path(url2pathname(urlparse(uri).path)).read_bytes()
        except OSError as error:
            raise ArchiveError(f"cannot read archived payload {uri}: {error}") from error
    try:
        return gzip.decompress(body)
    except (OSError, EOFError) as error:
        raise ArchiveError(f"archived payload {uri} is not valid gzip: {error}") from error


def _split_s3(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if not parsed.netloc:
        raise ArchiveError(f"no bucket in {uri!r}; expected s3://bucket/prefix")
    return parsed.netloc, parsed.path.strip("/")


def _put_s3(uri: str, body: bytes, endpoint_url: str | None) -> None:
    import boto3  # only the S3 shape pays for the import
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = _split_s3(uri)
    try:
        boto3.client("s3", endpoint_url=endpoint_url).put_object(
            Bucket=bucket, Key=key, Body=body, ContentType="application/gzip"
        )
    except (BotoCoreError, ClientError) as error:
        raise ArchiveError(f"cannot store payload in {uri}: {error}") from error


def _get_s3(uri: str, endpoint_url: str | None) -> bytes:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = _split_s3(uri)
    try:
        body: bytes = (
            boto3.client("s3", endpoint_url=endpoint_url)
            .get_object(Bucket=bucket, Key=key)["Body"]
            .read()
        )
    except (BotoCoreError, ClientError) as error:
        raise ArchiveError(f"cannot read archived payload {uri}: {error}") from error
    return body
