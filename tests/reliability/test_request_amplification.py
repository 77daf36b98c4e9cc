"""Issue 20's attacks on a real `forestops serve` (its own process, a tiny real champion, API
keys on): small bad requests must not become big answers, big memory or a stalled event loop,
malformed uploads are 4xx, slow clients are cut off, and the key is checked before the body.

Before the fix (benchmarks/RESULTS.md, Reliability): 30 KB of `[{}, ...]` answered 11 MB and
stalled /health 2.5 s; 16 MB of long strings answered 211 MB with a 976 MB peak RSS; a 1M-column
CSV header answered 95 MB in 16 s; a 200,000-character cell and a `数据.csv` upload were 500s.
"""

from __future__ import annotations

import json
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from forestops import contract
from forestops.serving.csv_io import MAX_COLUMNS
from forestops.serving.errors import MAX_ERRORS
from support.champion import SIGNING_KEY, champion_store
from support.serve_process import ServeProcess

KEY = "amplification-reader"
HEADERS = {"X-API-Key": KEY}
JSON = {**HEADERS, "Content-Type": "application/json"}
ANSWER_BOUND = 32_000  # bytes: 50 errors with cut inputs, whatever the request
MAX_CONNECTIONS = 24
GOOD_ROW = ["2596", "51", "3", "258", "0", "510", "221", "232", "148", "6279", "Rawah", "C7745"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, dataset_path: Path) -> Iterator[ServeProcess]:
    store = champion_store(
        tmp_path_factory.getbasetemp() / "request-amplification-store", dataset_path
    )
    env = {
        "FORESTOPS_HOME": str(tmp_path_factory.mktemp("amplification-home")),
        "MLFLOW_TRACKING_URI": store.settings.mlflow_tracking_uri,
        "MODEL_NAME": store.settings.model_name,
        "MODEL_POLL_INTERVAL_S": "0",
        "INFERENCE_RUNTIME": "native",
        "PREDICTION_LOG_ENABLED": "false",
        "API_KEYS": KEY,
        "INFERENCE_HEADER_TIMEOUT_S": "2",
        "INFERENCE_BODY_TIMEOUT_S": "3",
        "INFERENCE_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
        "MAX_BATCH_ROWS": "100000",  # room for a bad batch that takes a while to judge
        "MODEL_SIGNING_KEY": SIGNING_KEY,  # the store's models were signed in another home
    }
    with ServeProcess(env, tmp_path_factory.mktemp("amplification-serve")) as process:
        yield process


@pytest.fixture
def http(server: ServeProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=120) as client:
        yield client


def csv_upload(header: list[str], *rows: list[str]) -> bytes:
    return "\n".join(",".join(cells) for cells in (header, *rows)).encode() + b"\n"


FEATURES = list(contract.FEATURE_NAMES)
PART = b'--x\r\nContent-Disposition: form-data; name="file"'


def test_10k_empty_records_get_a_bounded_422_that_counts_the_rest(http: httpx.Client) -> None:
    body = b"[" + b",".join([b"{}"] * 10_000) + b"]"  # 30 KB; 12 missing fields each
    response = http.post("/predict", content=body, headers=JSON)
    assert response.status_code == 422
    assert len(response.content) < ANSWER_BOUND
    detail = response.json()["detail"]
    assert len(detail) == MAX_ERRORS + 1
    assert detail[0]["loc"] == ["body", 0, "elevation"]
    assert detail[-1]["type"] == "too_many_errors"
    assert f"{12 * 10_000 - MAX_ERRORS:,} more" in detail[-1]["msg"]


def test_16_mb_of_long_strings_get_a_bounded_answer_and_bounded_memory(
    server: ServeProcess, http: httpx.Client
) -> None:
    record = b'{"elevation":"' + b"x" * 1650 + b'"}'
    body = b"[" + b",".join([record] * 10_000) + b"]"  # just under MAX_BODY_BYTES (16 MiB)
    before = server.memory_kb("VmRSS")
    server.reset_peak()
    response = http.post("/predict", content=body, headers=JSON)
    peak = server.memory_kb("VmHWM")
    assert response.status_code == 422
    assert len(response.content) < ANSWER_BOUND
    echoed = response.json()["detail"][0]["input"]
    assert isinstance(echoed, str) and len(echoed) < 80  # cut, and says so
    # Before: +630 MB. The body, its parsed form and one chunk of errors fit in far less.
    assert (peak - before) / 1024 < 250


def test_health_answers_while_a_big_invalid_request_is_in_flight(
    server: ServeProcess, http: httpx.Client
) -> None:
    """The body is judged in a worker thread: the event loop keeps serving /health meanwhile
    (before, every /health waited behind the validation; one may slip in before it starts and
    one may be answered just before the 422 is read, hence more than two)."""
    body = b"[" + b",".join([b"{}"] * 100_000) + b"]"  # 1.2M errors to count: not instant
    head = (
        f"POST /predict HTTP/1.1\r\nHost: t\r\nX-API-Key: {KEY}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    sent, answered = threading.Event(), threading.Event()
    answers: list[bytes] = []

    def attack() -> None:
        with raw(server, timeout=120) as sock:
            sock.sendall(head.encode() + body)
            sent.set()
            answers.append(read_all(sock))
        answered.set()

    worker = threading.Thread(target=attack)
    worker.start()
    assert sent.wait(120)
    health_during = 0
    while not answered.is_set() and health_during < 1000:
        if http.get("/health").status_code == 200 and not answered.is_set():
            health_during += 1
    worker.join(120)
    assert answers and answers[0].startswith(b"HTTP/1.1 422")
    assert health_during >= 5


def test_a_csv_header_of_a_million_columns_is_a_small_422_naming_the_limit(
    http: httpx.Client,
) -> None:
    upload = ",".join(["a"] * 1_000_000).encode() + b"\n"  # 2 MB
    response = http.post(
        "/predict/csv", files={"file": ("wide.csv", upload, "text/csv")}, headers=HEADERS
    )
    assert response.status_code == 422
    assert len(response.content) < ANSWER_BOUND
    assert "MAX_HEADER_CHARS" in response.text


def test_a_csv_header_wider_than_any_valid_one_names_max_columns(http: httpx.Client) -> None:
    upload = csv_upload([f"c{i}" for i in range(MAX_COLUMNS + 1)], GOOD_ROW)
    response = http.post("/predict/csv", files={"file": ("w.csv", upload)}, headers=HEADERS)
    assert response.status_code == 422
    assert "MAX_COLUMNS" in response.text


def test_a_cell_over_the_csv_field_limit_is_a_422_naming_the_line(http: httpx.Client) -> None:
    upload = csv_upload(FEATURES, GOOD_ROW, ["9" * 200_000, *GOOD_ROW[1:]])
    response = http.post("/predict/csv", files={"file": ("cell.csv", upload)}, headers=HEADERS)
    assert response.status_code == 422
    assert len(response.content) < ANSWER_BOUND
    [error] = response.json()["detail"]
    assert (error["type"], error["loc"]) == ("csv_malformed", ["body", "file", 3])


@pytest.mark.parametrize("name", ["数据.csv", 'quote"and\\back.csv', "Größe ü.csv", "../../x.csv"])
def test_any_upload_filename_comes_back_encoded(http: httpx.Client, name: str) -> None:
    upload = csv_upload(FEATURES, GOOD_ROW)
    response = http.post("/predict/csv", files={"file": (name, upload)}, headers=HEADERS)
    assert response.status_code == 200, response.text
    header = response.headers["content-disposition"]
    assert header.isascii()  # a header is Latin-1 at most; this one stays ASCII
    kind, fallback, exact = header.split("; ")
    stem = name.replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    assert kind == "attachment"
    assert exact.startswith("filename*=UTF-8''")  # RFC 5987: what browsers save the file as
    assert (
        urllib.parse.unquote(exact.removeprefix("filename*=UTF-8''")) == f"{stem}-predictions.csv"
    )
    assert fallback.startswith('filename="') and fallback.endswith('"')
    assert not set(fallback[len('filename="') : -1]) & set('"\\')


MULTIPART = "multipart/form-data; boundary=x"
MALFORMED_UPLOADS = {
    "no boundary": ("multipart/form-data", b"abc", 400),
    "not multipart at all": (MULTIPART, b"\x00\xff garbage", 400),
    "cut mid-file": (MULTIPART, PART + b'; filename="a.csv"\r\n\r\nelev', 422),
    "two files": (MULTIPART, (PART + b'; filename="a.csv"\r\n\r\na\r\n') * 2 + b"--x--\r\n", 400),
    "a field, not a file": (MULTIPART, PART + b"\r\n\r\nabc\r\n--x--\r\n", 422),
    "a url-encoded form": ("application/x-www-form-urlencoded", b"file=abc", 422),
}


@pytest.mark.parametrize(
    ("kind", "body", "status"), MALFORMED_UPLOADS.values(), ids=MALFORMED_UPLOADS.keys()
)
def test_a_malformed_upload_is_a_4xx(
    http: httpx.Client, kind: str, body: bytes, status: int
) -> None:
    response = http.post("/predict/csv", content=body, headers={**HEADERS, "Content-Type": kind})
    assert response.status_code == status, response.text


def test_formula_cells_come_back_inert(http: httpx.Client) -> None:
    upload = csv_upload([*FEATURES, "cover_type"], [*GOOD_ROW, "=1+1"], [*GOOD_ROW, "@SUM(A1)"])
    response = http.post("/predict/csv", files={"file": ("f.csv", upload)}, headers=HEADERS)
    assert response.status_code == 200, response.text
    labels = [line.split(",")[len(FEATURES)] for line in response.text.splitlines()[1:]]
    assert labels == ["'=1+1", "'@SUM(A1)"]


def raw(server: ServeProcess, timeout: float = 30) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=timeout)


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes (a socket.timeout here means it never did)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("path", ["/predict/csv", "/predict"])
def test_the_key_is_checked_before_the_body_is_read(server: ServeProcess, path: str) -> None:
    """Headers announcing 10 MB (under MAX_BODY_BYTES), then nothing: the 401 comes without
    waiting for the body."""
    kind = "multipart/form-data; boundary=x" if path.endswith("csv") else "application/json"
    with raw(server) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: {kind}\r\n"
            f"Content-Length: {10 * 1024 * 1024}\r\n\r\n--x\r\n".encode()
        )
        sock.settimeout(2.5)  # under the 3 s body timeout: a 408 would mean it waited
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]


def test_a_client_sending_headers_byte_by_byte_is_cut_off(server: ServeProcess) -> None:
    request = b"GET /health HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 400
    stopped_at = None
    answer = b""
    with raw(server) as sock:
        sock.settimeout(0.1)
        for sent, byte in enumerate(request):  # 10 bytes/s: 40 s if nobody stops it
            try:
                sock.sendall(bytes([byte]))
                answer = sock.recv(65536)  # an answer, or b"" for closed, ends the drip
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                answer = b""
            stopped_at = sent
            break
    assert stopped_at is not None, "the server waited for the whole slow request"
    assert answer.startswith(b"HTTP/1.1 408") or answer == b"", answer[:200]


def test_an_idle_connection_is_closed(server: ServeProcess) -> None:
    with raw(server) as sock:
        assert read_all(sock) == b""


def test_a_body_that_never_comes_gets_408_and_the_connection_closed(server: ServeProcess) -> None:
    with raw(server) as sock:
        sock.sendall(
            f"POST /predict HTTP/1.1\r\nHost: t\r\nX-API-Key: {KEY}\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n[{".encode()
        )
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]


def test_a_declared_body_over_the_limit_gets_a_413_naming_the_setting(
    server: ServeProcess,
) -> None:
    """Headers announcing more than MAX_BODY_BYTES and no body: refused at once, by name."""
    with raw(server) as sock:
        sock.sendall(
            f"POST /predict HTTP/1.1\r\nHost: t\r\nX-API-Key: {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {64 * 1024 * 1024}\r\n\r\n".encode()
        )
        sock.settimeout(2.5)  # under the 3 s body timeout: a 408 would mean it waited
        answer = read_all(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), answer[:200]
    assert "MAX_BODY_BYTES" in json.loads(body)["detail"]


def test_headers_over_the_limit_get_431(server: ServeProcess) -> None:
    with raw(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]


def test_connections_beyond_the_limit_get_503_then_service_resumes(
    server: ServeProcess, http: httpx.Client
) -> None:
    idle = [raw(server) for _ in range(MAX_CONNECTIONS)]
    try:
        with raw(server) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            answer = read_all(sock)
        assert answer.startswith(b"HTTP/1.1 503"), answer[:200]
    finally:
        for sock in idle:
            sock.close()
    for _ in range(100):  # the server notices the closes on its next loop turns
        if http.get("/health").status_code == 200:
            break
    assert http.get("/health").status_code == 200
