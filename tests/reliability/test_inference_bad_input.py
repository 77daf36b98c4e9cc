"""Hand-written garbage against the real inference service (real HTTP, a real tiny champion).

Schemathesis (tests/integration/test_serving_schemathesis.py) explores what the OpenAPI allows;
these are the inputs people and broken clients actually send. Every one must be a 4xx that names
what is wrong, never a 5xx, and the service must still answer a good request afterwards.
tests/integration/test_serving_api.py already covers the empty array, 413 by row count and body
size, CSV with BOM/semicolons/course header and a duplicated or unknown column: not repeated here.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from forestops import contract
from forestops.serving.app import create_app
from forestops.serving.holder import ModelHolder
from forestops.webserver import BackgroundServer
from support.champion import champion_store, read_rows


@pytest.fixture(scope="module")
def record(dataset_path: Path) -> dict[str, Any]:
    frame = read_rows(dataset_path, 1)[list(contract.FEATURE_NAMES)]
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in frame.iloc[0].items()}


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory, dataset_path: Path) -> Iterator[httpx.Client]:
    store = champion_store(
        tmp_path_factory.getbasetemp() / "inference-bad-input-store", dataset_path
    )
    holder = ModelHolder(store.settings)
    holder.start()
    with (
        BackgroundServer(create_app(store.settings, holder)) as server,
        httpx.Client(base_url=server.url, timeout=60) as client,
    ):
        yield client
    holder.stop()


def as_json(record: dict[str, Any], field: str, raw: str) -> bytes:
    """`record` as JSON text with `field`'s value replaced by the raw JSON token `raw`."""
    parts = [
        f'"{k}": {raw if k == field else httpx.Request("GET", "/", json=v).content.decode()}'
        for k, v in record.items()
    ]
    return ("{" + ", ".join(parts) + "}").encode()


def assert_names(response: httpx.Response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    text = response.text
    for word in words:
        assert word in text, (word, text)


JSON_FIELD_CASES = {
    "NaN": ("elevation", "NaN"),
    "Infinity": ("slope", "Infinity"),
    "-Infinity": ("aspect", "-Infinity"),
    "1e400": ("elevation", "1e400"),
    "2**70": ("elevation", str(2**70)),
    "a float": ("hillshade_9am", "12.5"),
    "a word": ("elevation", '"two thousand"'),
    "a bool": ("slope", "true"),
    "null": ("aspect", "null"),
    "a list": ("elevation", "[1, 2]"),
    "an object": ("elevation", '{"$gt": 0}'),
    "unicode area": ("wilderness_area", '"Ráwah☃\\u0000"'),
    "SQL area": ("wilderness_area", '"Rawah\'; DROP TABLE prediction_log; --"'),
    "HTML soil": ("soil_type", '"<script>alert(1)</script>"'),
    "huge string": ("soil_type", '"' + "C" * 200_000 + '"'),
    "number area": ("wilderness_area", "1e308"),
}


@pytest.mark.parametrize(("field", "raw"), JSON_FIELD_CASES.values(), ids=JSON_FIELD_CASES.keys())
def test_a_bad_field_value_is_422_naming_the_field(
    http: httpx.Client, record: dict[str, Any], field: str, raw: str
) -> None:
    body = as_json(record, field, raw)
    response = http.post("/predict", content=body, headers={"Content-Type": "application/json"})
    if response.status_code == 422 and response.json()["detail"][0]["type"] == "json_invalid":
        return  # NaN/Infinity are not JSON at all: the parser names the body
    assert_names(response, 422, field)
    assert [e["loc"][-1] for e in response.json()["detail"]] == [field]


def test_100k_rows_are_413_as_json_and_as_csv(http: httpx.Client, record: dict[str, Any]) -> None:
    as_json = http.post("/predict", json=[record] * 100_000)  # ~30 MB: over MAX_BODY_BYTES
    assert as_json.status_code == 413
    header, row = canonical_csv(record, FEATURES).decode().splitlines()
    upload = "\n".join([header, *[row] * 100_000]).encode()  # ~6 MB: under it, over the rows
    as_csv = http.post("/predict/csv", files={"file": ("big.csv", upload, "text/csv")})
    assert_names(as_csv, 413, "MAX_BATCH_ROWS")


def test_a_megabyte_of_padding_in_one_record_is_422(
    http: httpx.Client, record: dict[str, Any]
) -> None:
    response = http.post("/predict", json={**record, "padding": "x" * 1_200_000})
    assert_names(response, 422, "padding", "extra_forbidden")


WRONG_TYPES = {
    "text/plain": ("text/plain", None),
    "form": ("application/x-www-form-urlencoded", None),
    "xml": ("application/xml", None),
    "none": (None, None),
}


@pytest.mark.parametrize(("content_type", "_"), WRONG_TYPES.values(), ids=WRONG_TYPES.keys())
def test_a_json_body_sent_as_another_content_type_is_415(
    http: httpx.Client, record: dict[str, Any], content_type: str | None, _: None
) -> None:
    """A browser posts text/plain or a form cross-site without a preflight: refuse, like FastAPI."""
    body = httpx.Request("POST", "/", json=record).content
    headers = {"Content-Type": content_type} if content_type else {}
    response = http.post("/predict", content=body, headers=headers)
    assert_names(response, 415, "Content-Type", "application/json")


def test_a_json_type_with_charset_or_a_json_suffix_is_accepted(
    http: httpx.Client, record: dict[str, Any]
) -> None:
    body = httpx.Request("POST", "/", json=record).content
    for kind in ("application/json; charset=utf-8", "application/vnd.forest+json"):
        assert http.post("/predict", content=body, headers={"Content-Type": kind}).is_success


def canonical_csv(record: dict[str, Any], names: list[str], sep: str = ",") -> bytes:
    row = sep.join(str(record.get(name, "1")) for name in names)
    return f"{sep.join(names)}\n{row}\n".encode()


FEATURES = list(contract.FEATURE_NAMES)
CSV_CASES: dict[str, tuple[Any, str]] = {
    "missing column": (lambda r: canonical_csv(r, FEATURES[1:]), "elevation"),
    "extra column": (lambda r: canonical_csv(r, [*FEATURES, "colour"]), "colour"),
    "header only": (lambda r: ",".join(FEATURES).encode() + b"\n", "row"),
    "empty file": (lambda r: b"", "empty"),
    "ragged row": (lambda r: canonical_csv(r, FEATURES) + b"1,2,3\n", "line 3"),
    "png": (lambda r: b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), "UTF-8"),
    "gzip": (lambda r: gzip.compress(canonical_csv(r, FEATURES)), "UTF-8"),
    "latin-1": (
        lambda r: (
            canonical_csv({**r, "wilderness_area": "Ráwah"}, FEATURES).decode().encode("latin-1")
        ),
        "UTF-8",
    ),
    "NUL bytes": (lambda r: canonical_csv(r, FEATURES).replace(b",", b"\x00,", 3), "column"),
    "tabs": (lambda r: canonical_csv(r, FEATURES, "\t"), "column"),
    "injection in area": (
        lambda r: canonical_csv({**r, "wilderness_area": "'; DROP TABLE x; --"}, FEATURES),
        "wilderness_area",
    ),
}


@pytest.mark.parametrize(("make", "named"), CSV_CASES.values(), ids=CSV_CASES.keys())
def test_a_bad_csv_upload_is_422_naming_the_problem(
    http: httpx.Client, record: dict[str, Any], make: Any, named: str
) -> None:
    upload = make(record)
    response = http.post("/predict/csv", files={"file": ("upload.csv", upload, "text/csv")})
    assert_names(response, 422, named)


def test_csv_sent_as_json_and_json_sent_as_csv_are_4xx(
    http: httpx.Client, record: dict[str, Any]
) -> None:
    as_text = canonical_csv(record, FEATURES)
    assert (
        http.post("/predict", content=as_text, headers={"Content-Type": "text/csv"}).status_code
        == 415
    )
    not_multipart = http.post("/predict/csv", json=record)
    assert_names(not_multipart, 422, "file")


def test_the_service_still_answers_after_all_that(
    http: httpx.Client, record: dict[str, Any]
) -> None:
    assert http.post("/predict", json=record).status_code == 200
    assert http.get("/health").json()["status"] == "ok"
