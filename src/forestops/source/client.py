"""Client of the course's batch data API (or ours): one call, one batch payload.

Transient failures (timeouts, connection errors, 5xx, 429) are retried alike, with exponential
backoff (0.5, 1, 2, 4 ... s, up to SOURCE_BACKOFF_MAX_S, plus up to a tenth of jitter) for
SOURCE_RETRY_BUDGET_S (default 120 s: the course's server restarting, or ours, is back well within
it), at most SOURCE_RETRIES attempts; then `SourceError` says what failed, how often and for how
long. Other 4xx are not retried (asking again cannot help). The course's 'all data collected' 400 is `AllDataCollected`: the normal end of a run, not a
failure. A 200 whose body is not the course's shape is `MalformedPayload`, carrying the raw bytes
so the caller can archive and record them. Rows are not checked here: one bad row is the
validator's business (quarantine), not a reason to drop the whole payload.
"""

from __future__ import annotations

import hashlib
import logging
import random
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
)

from forestops.config import Settings, require_http_url
from forestops.source import protocol

log = logging.getLogger(__name__)

FIRST_BACKOFF_S = 0.5
JITTER_SHARE = 0.1
COURSE_GROUP_10 = (
    "the course's data API answers 500 to every call of group 10 (its share of the data is "
    "smaller than one sample): use another GROUP_NUMBER"
)


def backoff_s(attempt: int, backoff_max: float, jitter: float = 0.0) -> float:
    """The wait after failed attempt `attempt` (1-based): 0.5 s doubling up to `backoff_max`,
    `jitter` (0..1) adding up to a tenth, never beyond `backoff_max`."""
    base = FIRST_BACKOFF_S * 2 ** min(attempt - 1, 30)
    return min(backoff_max, base * (1 + JITTER_SHARE * jitter))


class SourceError(RuntimeError):
    """The data API could not deliver a batch; `status` is its last HTTP status, if it answered."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class MalformedPayload(SourceError):
    """The answer was not the course's JSON shape; `raw` is the body exactly as received."""

    def __init__(self, message: str, raw: bytes, source: str) -> None:
        super().__init__(message)
        self.raw = raw
        self.source = source


class AllDataCollected(Exception):
    """The source has served every batch to this group (the course's 'all collected' 400)."""


class _Transient(Exception):
    """A retryable HTTP answer (5xx, 429)."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}: {_detail(response)}")
        self.status = response.status_code


class _CoursePayload(BaseModel):
    model_config = ConfigDict(extra="allow")

    group_number: int
    batch_number: int
    data: list[Any]


@dataclass(frozen=True, slots=True)
class SourcePayload:
    """One answer of `GET /data`: the rows as received (unchecked) and the raw body."""

    source: str
    group_number: int
    batch_number: int
    rows: list[Any] = field(repr=False)
    raw: bytes = field(repr=False)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()


def parse_payload(raw: bytes, source: str) -> SourcePayload:
    """The course's `{"group_number", "batch_number", "data": [...]}`, or MalformedPayload."""
    try:
        payload = _CoursePayload.model_validate_json(raw)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in error.errors()[:3]
        )
        raise MalformedPayload(
            f"malformed payload from {source}: {problems}", raw, source
        ) from None
    return SourcePayload(source, payload.group_number, payload.batch_number, payload.data, raw)


class SourceClient:
    def __init__(
        self,
        base_url: str,
        timeout: float = 30.0,
        retries: int = 12,
        backoff_max: float = 30.0,
        retry_budget: float = 120.0,
    ) -> None:
        self.base_url = require_http_url(base_url).rstrip("/")  # not a network fault to retry
        self._retries = retries
        self._backoff_max = backoff_max
        self._retry_budget = retry_budget
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)

    @classmethod
    def from_settings(cls, settings: Settings) -> SourceClient:
        return cls(
            source_url(settings),
            timeout=settings.source_timeout_s,
            retries=settings.source_retries,
            backoff_max=settings.source_backoff_max_s,
            retry_budget=settings.source_retry_budget_s,
        )

    def fetch(self, group: int) -> SourcePayload:
        """One batch payload for `group`."""
        try:
            response = self._get("/data", {"group_number": group})
        except SourceError as error:
            if error.status == 500 and group == 10:
                raise SourceError(f"{error}; {COURSE_GROUP_10}", error.status) from error
            raise
        if response.status_code == 400 and protocol.is_all_collected(_detail(response)):
            raise AllDataCollected(_detail(response))
        if response.is_error:
            raise SourceError(
                f"data API {response.url} answered HTTP {response.status_code}: "
                f"{_detail(response)}",
                response.status_code,
            )
        return parse_payload(response.content, str(response.url))

    def _get(self, path: str, params: dict[str, Any]) -> httpx.Response:
        retrying = Retrying(
            stop=stop_after_attempt(self._retries) | stop_before_delay(self._retry_budget),
            wait=lambda state: backoff_s(state.attempt_number, self._backoff_max, random.random()),
            retry=retry_if_exception_type((httpx.TransportError, _Transient)),
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    response = self._http.get(path, params=params)
                    if response.status_code >= 500 or response.status_code == 429:
                        raise _Transient(response)
        except (httpx.TransportError, _Transient) as error:
            attempts = retrying.statistics["attempt_number"]
            raise SourceError(
                f"data API {self.base_url}{path} failed after {attempts} attempts: "
                f"{_reason(error)}",
                getattr(error, "status", None),
            ) from error
        return response

    def _log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning(
            "data API %s: %s (attempt %d of %d, next in %.1f s), retrying for up to %g s",
            self.base_url,
            _reason(error),
            state.attempt_number,
            self._retries,
            state.upcoming_sleep,
            self._retry_budget,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SourceClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def source_url(settings: Settings) -> str:
    """SOURCE_API_BASE_URL, or the built-in data API on this machine."""
    return settings.source_api_base_url or f"http://127.0.0.1:{settings.data_api_port}"


def _reason(error: BaseException | None) -> str:
    """What went wrong, in words: an HTTP answer as its status and detail, a network fault as
    httpx names it (ConnectError, ReadTimeout, RemoteProtocolError ...) and its message."""
    if isinstance(error, _Transient):
        return str(error)
    return f"{type(error).__name__}: {error}"


def _detail(response: httpx.Response) -> str:
    """FastAPI's `{"detail": ...}` when there is one, else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("detail", body)) if isinstance(body, dict) else str(body)[:200]
