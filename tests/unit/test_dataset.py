"""The data set loader: course CSV and UCI covtype.data in, one canonical frame out, cached.

UCI-format files are generated from a slice of the shared data set inside tmp_path (the real
UCI file is never downloaded in tests); the download path runs against a loopback server.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI, Response
from typer.testing import CliRunner

from forestops import contract
from forestops.cli import app as cli
from forestops.config import Settings
from forestops.source.dataset import DatasetError, load_dataset, read_dataset
from forestops.webserver import BackgroundServer, free_port
from support.dataset_files import course_csv


@pytest.fixture(scope="module")
def sample(dataset_path: Path) -> pd.DataFrame:
    return read_dataset(dataset_path, nrows=400)


def to_uci(frame: pd.DataFrame) -> pd.DataFrame:
    """The same rows in UCI covtype.data layout: one-hot area and soil, labels 1..7."""
    areas = [c.code for c in contract.WILDERNESS_AREAS]
    soils = [c.code for c in contract.SOIL_TYPES]
    parts = [
        frame.loc[:, list(contract.NUMERIC_NAMES)].to_numpy(),
        (frame["wilderness_area"].to_numpy()[:, None] == np.array(areas)).astype(int),
        (frame["soil_type"].to_numpy()[:, None] == np.array(soils)).astype(int),
        frame[[contract.LABEL]].to_numpy() + 1,
    ]
    return pd.DataFrame(np.hstack(parts))


def test_course_csv_becomes_canonical(dataset_path: Path, sample: pd.DataFrame) -> None:
    raw = pd.read_csv(dataset_path, nrows=400)
    assert list(sample.columns) == list(contract.COLUMNS)
    assert sample["elevation"].tolist() == raw["Elevation"].tolist()
    assert sample["soil_type"].tolist() == raw["Soil_Type"].tolist()
    assert set(sample["cover_type"]) <= set(range(7))
    assert str(sample["wilderness_area"].dtype) == "str"


def test_uci_covtype_data_is_converted(tmp_path: Path, sample: pd.DataFrame) -> None:
    path = tmp_path / "covtype.data.gz"
    to_uci(sample).to_csv(path, header=False, index=False)
    converted = read_dataset(path)
    pd.testing.assert_frame_equal(converted, sample)


def test_uci_rows_that_are_not_one_hot_are_refused(tmp_path: Path, sample: pd.DataFrame) -> None:
    uci = to_uci(sample.head(20))
    uci.iloc[7, 10:14] = [1, 1, 0, 0]  # two wilderness areas
    path = tmp_path / "covtype.data"
    uci.to_csv(path, header=False, index=False)
    with pytest.raises(DatasetError, match="row 8: wilderness_area is not exactly one-hot"):
        read_dataset(path)


def test_aliases_in_a_course_file_are_canonicalised(tmp_path: Path, sample: pd.DataFrame) -> None:
    course = sample.head(3).rename(
        columns={f.name: f.course_name for f in contract.NUMERIC_FEATURES}
    )
    course = course.rename(
        columns={"wilderness_area": "Wilderness_Area", "soil_type": "Soil_Type"}
    ).rename(columns={contract.LABEL: "Cover_Type"})
    course["Wilderness_Area"] = ["Comanche Peak", "Cache la Poudre", "rawah"]
    course["Soil_Type"] = ["7745", "C2702", "c8776"]
    path = tmp_path / "aliases.csv"
    course.to_csv(path, index=False)
    frame = read_dataset(path)
    assert frame["wilderness_area"].tolist() == ["Commanche", "Cache", "Rawah"]
    assert frame["soil_type"].tolist() == ["C7745", "C2702", "C8776"]


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("Aspect", "999", r"row 3: aspect=999 outside \[0, 360\]"),
        ("Slope", "steep", "row 3: slope must be an integer, got 'steep'"),
        ("Soil_Type", "C0000", "row 3: unknown soil_type 'C0000'"),
        ("Cover_Type", "7", "row 3: cover_type=7 is not a class id"),
    ],
)
def test_a_file_breaking_the_contract_names_the_row(
    tmp_path: Path, dataset_path: Path, column: str, value: str, message: str
) -> None:
    course = pd.read_csv(dataset_path, nrows=5, dtype=str)
    course.loc[2, column] = value
    path = tmp_path / "bad.csv"
    course.to_csv(path, index=False)
    with pytest.raises(DatasetError, match=message):
        read_dataset(path)


def test_unknown_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(DatasetError, match="neither a course CSV"):
        read_dataset(path)


def test_load_dataset_caches_a_parsed_copy_and_notices_changes(
    home: Path, dataset_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = course_csv(dataset_path, home.parent / "subset.csv", rows=200)
    monkeypatch.setenv("FORESTOPS_DATASET", str(source))

    first = load_dataset(Settings())
    [cache] = (home / "cache").glob("dataset-*.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(cache), first)
    pd.testing.assert_frame_equal(load_dataset(Settings()), first)

    course_csv(dataset_path, source, rows=150)  # the file changes
    assert len(load_dataset(Settings())) == 150
    [new_cache] = (home / "cache").glob("dataset-*.parquet")  # the stale copy is gone
    assert new_cache != cache


def test_missing_dataset_file_is_a_clear_error(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORESTOPS_DATASET", str(home / "nope.csv"))
    with pytest.raises(DatasetError, match="data set not found"):
        load_dataset(Settings())


def test_unset_dataset_downloads_uci_once(
    home: Path, sample: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The download path against a loopback server standing in for UCI."""
    payload = gzip.compress(to_uci(sample).to_csv(header=False, index=False).encode())
    requests: list[str] = []
    uci = FastAPI()

    @uci.get("/covtype.data.gz")
    def download() -> Response:
        requests.append("GET")
        return Response(payload, media_type="application/gzip")

    with BackgroundServer(uci) as server:
        monkeypatch.setenv("DATASET_DOWNLOAD_URL", f"{server.url}/covtype.data.gz")
        pd.testing.assert_frame_equal(load_dataset(Settings()), sample)
        pd.testing.assert_frame_equal(load_dataset(Settings()), sample)
    assert requests == ["GET"]
    assert (home / "covtype.data.gz").read_bytes() == payload


def test_failed_download_says_what_to_do(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATASET_DOWNLOAD_URL", f"http://127.0.0.1:{free_port()}/covtype.data.gz")
    with pytest.raises(DatasetError, match="set FORESTOPS_DATASET to a local copy"):
        load_dataset(Settings())
    assert not list(home.glob("covtype.data.gz*"))


def test_data_fetch_command(
    home: Path, dataset_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = course_csv(dataset_path, home.parent / "subset.csv", rows=120)
    monkeypatch.setenv("FORESTOPS_DATASET", str(source))
    fetched = CliRunner().invoke(cli, ["data", "fetch"])
    assert fetched.exit_code == 0, fetched.output
    assert fetched.stdout.startswith("120 rows (cover_type 0: ")
    assert list((home / "cache").glob("dataset-*.parquet"))

    monkeypatch.setenv("FORESTOPS_DATASET", str(home / "missing.csv"))
    failed = CliRunner().invoke(cli, ["data", "fetch"])
    assert failed.exit_code == 1
    assert failed.stderr == f"data fetch failed: data set not found: {home / 'missing.csv'}\n"
