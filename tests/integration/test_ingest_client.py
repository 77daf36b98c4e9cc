"""The data API client against real HTTP servers on loopback that misbehave on purpose."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from fastapi import FastAPI, Response

from forestops.source import protocol
from forestops.source.client import AllDataCollected, MalformedPayload, SourceClient, SourceError
from forestops.webserver import BackgroundServer, free_port

ROW = ["2596", "51", "3", "258", "0", "510", "221", "232", "148", "6279", "Rawah", "C7745", "4"]
OK = json.dumps({"group_number": 1, "batch_number": 3, "data": [ROW, ROW[:5]]}).encode()


@dataclass
class Answer:
    status: int = 200
    body: bytes = OK
    delay: float = 0.0


@dataclass
class ScriptedSource:
    """Answers /data with the scripted answers in turn (the last one repeats); counts calls."""

    answers: list[Answer] = field(default_factory=list)
    calls: int = 0
    url: str = ""

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/data")
        def data(group_number: int) -> Response:
            answer = self.answers[min(self.calls, len(self.answers) - 1)]
            self.calls += 1
            time.sleep(answer.delay)
            return Response(answer.body, answer.status, media_type="application/json")

        return app


@pytest.fixture
def source() -> Iterator[ScriptedSource]:
    scripted = ScriptedSource()
    with BackgroundServer(scripted.app()) as server:
        scripted.url = server.url
        yield scripted


def client(url: str, retries: int = 3, timeout: float = 5.0) -> SourceClient:
    return SourceClient(url, timeout=timeout, retries=retries, backoff_max=0.01)


def detail(text: str) -> bytes:
    return json.dumps({"detail": text}).encode()


def test_a_payload_keeps_raw_bytes_and_unchecked_rows(source: ScriptedSource) -> None:
    source.answers = [Answer()]
    payload = client(source.url).fetch(1)
    assert (payload.group_number, payload.batch_number) == (1, 3)
    assert payload.rows == [ROW, ROW[:5]]  # a short row is the validator's business
    assert payload.raw == OK
    assert payload.source.startswith(source.url)


def test_5xx_and_429_are_retried_until_an_answer(source: ScriptedSource) -> None:
    source.answers = [Answer(503, b"busy"), Answer(502, b"gateway"), Answer(429, b"slow"), Answer()]
    assert client(source.url, retries=4).fetch(1).batch_number == 3
    assert source.calls == 4


def test_persistent_5xx_fails_loudly_after_the_retries(source: ScriptedSource) -> None:
    source.answers = [Answer(500, detail("boom"))]
    with pytest.raises(SourceError, match=r"failed after 3 attempts: .*HTTP 500: boom"):
        client(source.url, retries=3).fetch(1)
    assert source.calls == 3


def test_a_timeout_is_retried(source: ScriptedSource) -> None:
    source.answers = [Answer(delay=2.0), Answer()]
    assert client(source.url, retries=2, timeout=0.5).fetch(1).batch_number == 3
    assert source.calls == 2


def test_connection_refused_fails_after_the_retries() -> None:
    with pytest.raises(SourceError, match="failed after 2 attempts: ConnectError"):
        client(f"http://127.0.0.1:{free_port()}", retries=2).fetch(1)


@pytest.mark.parametrize(
    "answer",
    [Answer(404, detail("Not Found")), Answer(400, detail("Invalid group number"))],
    ids=["404", "invalid-group"],
)
def test_other_4xx_fail_at_once(source: ScriptedSource, answer: Answer) -> None:
    source.answers = [answer]
    with pytest.raises(SourceError, match=f"HTTP {answer.status}"):
        client(source.url).fetch(1)
    assert source.calls == 1


@pytest.mark.parametrize(
    "text",
    [
        protocol.COURSE_ALL_COLLECTED,  # the course server, word for word
        "Ya se recolectó toda la información mínima necesaria",
        protocol.all_collected_detail(1, 10),  # ours
    ],
)
def test_all_collected_400_is_the_end_not_an_error(source: ScriptedSource, text: str) -> None:
    source.answers = [Answer(400, detail(text))]
    with pytest.raises(AllDataCollected):
        client(source.url).fetch(1)
    assert source.calls == 1


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"<html>proxy error</html>", "body: Invalid JSON"),
        (b'{"group_number": 1, "batch_number": 2, "data": "rows"}', "data: Input should be"),
        (b'{"group_number": 1, "data": []}', "batch_number: Field required"),
        (b"[1, 2, 3]", "Input should be an object"),
    ],
)
def test_a_body_of_the_wrong_shape_is_malformed_with_its_raw_bytes(
    source: ScriptedSource, body: bytes, problem: str
) -> None:
    source.answers = [Answer(200, body)]
    with pytest.raises(MalformedPayload, match=problem) as caught:
        client(source.url).fetch(1)
    assert caught.value.raw == body
    assert source.calls == 1  # asking again would not fix it
