"""The raw payload archive on S3 (moto's server mode: a real S3-protocol HTTP server on loopback)
and on a local folder: stored compressed, content-addressed, read back for replay."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pandas as pd
import pytest
from moto.server import ThreadedMotoServer
from sqlalchemy import select

from forestops.config import Settings
from forestops.pipeline.ingest import IngestError, ingest_batch, replay_batch
from forestops.source.dataset import read_dataset
from forestops.source.server import create_app
from forestops.store.archive import ArchiveError, archive_payload, read_payload
from forestops.store.database import get_engine
from forestops.store.schema import ingestion_batches
from forestops.webserver import BackgroundServer, free_port


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "forestops",
        "AWS_SECRET_ACCESS_KEY": "forestops-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="raw")
    yield endpoint
    server.stop()


def test_local_archive_is_compressed_and_content_addressed(tmp_path: Path) -> None:
    raw = json.dumps({"data": [["1"] * 13] * 50}).encode()
    uri = archive_payload(raw, str(tmp_path / "artifacts"))
    assert uri == archive_payload(raw, str(tmp_path / "artifacts"))  # same bytes, same object
    [stored] = (tmp_path / "artifacts").rglob("*.gz")
    assert gzip.decompress(stored.read_bytes()) == raw
    assert len(stored.read_bytes()) < len(raw)
    assert read_payload(uri) == raw


def test_unreadable_archive_objects_are_archive_errors(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="cannot read"):
        read_payload((tmp_path / "missing.gz").as_uri())
    (tmp_path / "plain.gz").write_bytes(b"not gzip")
    with pytest.raises(ArchiveError, match="not valid gzip"):
        read_payload((tmp_path / "plain.gz").as_uri())


def test_ingest_archives_to_s3_and_replays_from_it(
    home: Path, s3_endpoint: str, dataset_path: Path, tmp_path: Path
) -> None:
    frame: pd.DataFrame = read_dataset(dataset_path, nrows=300)
    with BackgroundServer(create_app(frame, tmp_path / "s.json", sample_fraction=1)) as source:
        settings = Settings(
            source_api_base_url=source.url,
            artifact_store_uri="s3://raw/forestops",
            s3_endpoint_url=s3_endpoint,
        )
        loaded = ingest_batch(settings)
    with get_engine(settings.database_url).connect() as connection:
        uri = connection.execute(
            select(ingestion_batches.c.payload_uri).where(ingestion_batches.c.id == loaded.batch_id)
        ).scalar_one()
    assert uri.startswith("s3://raw/forestops/payloads/")
    body = boto3.client("s3", endpoint_url=s3_endpoint).get_object(
        Bucket="raw", Key=uri.removeprefix("s3://raw/")
    )["Body"]
    assert len(json.loads(gzip.decompress(body.read()))["data"]) == 30

    replayed = replay_batch(settings, loaded.batch_id or 0)
    assert (replayed.received, replayed.inserted, replayed.duplicates) == (30, 0, 30)


def test_an_unusable_archive_stops_ingestion_before_the_database(
    home: Path, s3_endpoint: str, dataset_path: Path, tmp_path: Path
) -> None:
    frame = read_dataset(dataset_path, nrows=100)
    with BackgroundServer(create_app(frame, tmp_path / "s.json")) as source:
        settings = Settings(
            source_api_base_url=source.url,
            artifact_store_uri="s3://no-such-bucket/raw",
            s3_endpoint_url=s3_endpoint,
        )
        with pytest.raises(IngestError, match="not stored: cannot store payload in s3://no-such"):
            ingest_batch(settings)
    with get_engine(settings.database_url).connect() as connection:
        assert connection.execute(select(ingestion_batches)).first() is None
