"""`POST /predict` of a small, valid request answered in front of FastAPI's router.

A single-record prediction on the compiled forest costs ~0.25 ms of model time; FastAPI's route
matching, its dependency resolution (the service state, the key guard and its two security
schemes, the `explain` query) and the exception and exit-stack layers cost about as much again
per request (cProfile in process, benchmarks/RESULTS.md "Single record"). This middleware takes
only the requests whose answer is certain to be a 200 of the route and does the route's work
itself, with the route's own functions: `json_body.decode_body`, the model, then
`routes.predict.answered`, `explain_into` when asked, and `answer_body`. So both paths give the
same bytes, and every request it is not sure of goes to the route untouched:

- any method, path or query other than `POST /predict` with no query or exactly one of
  `explain=false|true|all` (anything else, an unknown value's 422 included, is FastAPI's), a
  Content-Type that is not JSON, a body over `INLINE_MAX_BYTES` or of undeclared length, no
  model loaded (the route's 503), an explanation asked of a model that cannot give one (its
  422) or not yet at once (a forest before its kernel is built: the route builds it, or words
  the 422 if it fails), a key the guard would refuse (the guard's 401): passed on before a byte
  of the body is read;
- a body that does not decode into at most `INLINE_MAX_ROWS` valid records (every 422 and 413),
  or, to explain, into more than `MAX_EXPLAIN_ROWS`: passed on with the body replayed, so the
  route judges it and words the error.

It sits inside `MetricsMiddleware` (which reads the route template from `scope["route"]`, set
here to the route this request would have matched) and inside FastAPI's body-size limits.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from forestops.serving.dependencies import ServiceState
from forestops.serving.json_body import decode_body, require_json
from forestops.serving.routes.predict import (
    INLINE_MAX_BYTES,
    INLINE_MAX_ROWS,
    answer_body,
    answered,
    explain_into,
)
from forestops.serving.served_model import ServedModel

_PATH = "/predict"
_JSON_HEADERS = [(b"content-type", b"application/json")]
_EXPLAIN = {b"": "false", b"explain=false": "false", b"explain=true": "true", b"explain=all": "all"}


class FastPredictMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        service: ServiceState,
        route: APIRoute,
        admits: Callable[[str | None, str | None], bool],
    ) -> None:
        """`route`: the `/predict` route (its template labels the metrics); `admits`:
        `auth.client_admission` for the app's settings."""
        self.app = app
        self.service = service
        self.route = route
        self.admits = admits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        taken = self._takes(scope)
        if taken is None:
            await self.app(scope, receive, send)
            return
        served, headers, explain = taken
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client left: nothing to answer
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        try:
            arrays = decode_body(body, self.service.settings.max_batch_rows)
        except (RequestValidationError, HTTPException):
            arrays = None
        settings = self.service.settings
        most = (
            INLINE_MAX_ROWS
            if explain == "false"
            else min(INLINE_MAX_ROWS, settings.max_explain_rows)
        )
        if arrays is None or len(arrays[0]) > most:
            await self.app(scope, _replay(body, receive), send)
            return
        scope["route"] = self.route
        request_id = _text(headers.get(b"x-request-id"))
        probabilities = served.predict(*arrays)
        labels, predictions = answered(
            self.service, served, arrays, probabilities, request_id, started
        )
        if served.explainer is not None and explain != "false":
            await explain_into(predictions, served.explainer, arrays, labels, explain, settings)
        answer = answer_body(served, predictions)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(answer)).encode()), *_JSON_HEADERS],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    def _takes(self, scope: Scope) -> tuple[ServedModel, dict[bytes, bytes], str] | None:
        """(the model it answers with, the headers, the `explain` asked) if this request is one
        the route would answer 200 without its guard having a say (judged on the request line and
        headers only), else None. The model is read once, as the route reads it."""
        if scope["type"] != "http" or scope["path"] != _PATH or scope["method"] != "POST":
            return None
        served = self.service.holder.current
        explain = _EXPLAIN.get(scope["query_string"])
        if served is None or explain is None:
            return None
        if explain != "false" and (
            served.explainer is None or not served.explainer.answers_at_once
        ):
            return None
        headers = _headers(scope)
        length = headers.get(b"content-length", b"")
        if not length.isdigit() or int(length) > INLINE_MAX_BYTES:
            return None
        try:
            require_json(_text(headers.get(b"content-type")))
        except HTTPException:
            return None
        if not self.admits(_text(headers.get(b"x-api-key")), _text(headers.get(b"authorization"))):
            return None
        return served, headers, explain


def _headers(scope: Scope) -> dict[bytes, bytes]:
    """The request's headers by lower-case name; of a repeated one the first, as Starlette's
    `Headers.get` (and so the route) reads it."""
    return dict(reversed(scope["headers"]))


def _text(value: bytes | None) -> str | None:
    """A header value as Starlette decodes it (latin-1)."""
    return None if value is None else value.decode("latin-1")


def _replay(body: bytes, receive: Receive) -> Receive:
    """`receive` for the route: the body already read, then the connection's own messages."""
    pending = True

    async def replayed() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
