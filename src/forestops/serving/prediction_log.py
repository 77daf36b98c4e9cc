"""Every served record into `prediction_log`, without the request path ever waiting on the database.

`record()` runs on the request path: it only appends the request's arrays (already computed for
the model) to a bounded in-memory buffer, no I/O, no per-record Python objects. A writer thread
turns the buffer into rows and writes them in batches, once a second or as soon as
`_BATCH_RECORDS` are waiting (PostgreSQL: one COPY per batch; SQLite: one sqlite3 `executemany`
of an INSERT that SQLAlchemy compiles once). While the database is down the batch stays in hand
and is retried with a capped backoff; the buffer is the backlog,
`forestops_prediction_log_backlog` says how big it is, and once it holds `PREDICTION_LOG_CAPACITY`
records new ones are dropped and counted (`forestops_prediction_log_dropped_total`): a prediction
never fails because of the log.
`stop()` flushes what is buffered (bounded by a timeout; what cannot be written is counted as
dropped).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import Engine, insert

from forestops import contract
from forestops.store.schema import prediction_log

log = logging.getLogger(__name__)

_BATCH_RECORDS = 2000
# The writer waits this long for a batch to fill (woken early by a full batch, flush or stop):
# writing whatever had arrived as soon as the last write ended meant one commit per request or
# two under a steady stream of single records, writer CPU that competed with them for the GIL.
_LINGER_S = 1.0
_RETRY_MIN_S = 0.5
_RETRY_MAX_S = 15.0
_COLUMNS = (
    "logged_at", "request_id", "model_version", "features", "prediction", "probability",
    "latency_ms",
)  # fmt: skip
_COPY = f"COPY {prediction_log.name} ({', '.join(_COLUMNS)}) FROM STDIN"
_CODES = {
    name: [category.code for category in categories]
    for name, categories in contract.CATEGORICAL_FEATURES.items()
}
# Category codes are contract identifiers (letters, digits, '-'): nothing in them needs escaping.
_FEATURES_JSON = (
    "{"
    + ", ".join(f'"{name}": %d' for name in contract.NUMERIC_NAMES)
    + ', "wilderness_area": "%s", "soil_type": "%s"}'
)
_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's storage format for DateTime on SQLite


@dataclass(frozen=True, slots=True)
class _Chunk:
    """One request's records, as the arrays the model saw."""

    logged_at: datetime
    request_id: str
    model_version: str
    numeric: np.ndarray
    area: np.ndarray
    soil: np.ndarray
    prediction: np.ndarray
    probability: np.ndarray
    latency_ms: float

    def __len__(self) -> int:
        return len(self.prediction)

    def rows(self) -> list[tuple[object, ...]]:
        """The chunk as `_COLUMNS` tuples, `features` already JSON text.

        One %-template per record instead of a dict plus a JSON encoder: the writer's CPU competes
        with requests for the GIL, and this is most of it (benchmarks/RESULTS.md, ## Monitoring).
        """
        numeric = self.numeric.astype(np.int64).tolist()
        areas = _CODES["wilderness_area"]
        soils = _CODES["soil_type"]
        head = (self.logged_at, self.request_id, self.model_version)
        return [
            (*head, _FEATURES_JSON % (*values, areas[area], soils[soil]), prediction, probability,
             self.latency_ms)
            for values, area, soil, prediction, probability in zip(
                numeric,
                self.area.tolist(),
                self.soil.tolist(),
                self.prediction.tolist(),
                self.probability.tolist(),
                strict=True,
            )
        ]  # fmt: skip


class PredictionLogger:
    def __init__(self, engine: Engine, registry: CollectorRegistry, capacity: int) -> None:
        self.engine = engine
        self.capacity = capacity
        self._insert = "" if engine.dialect.name == "postgresql" else _positional_insert(engine)
        self._chunks: deque[_Chunk] = deque()
        self._buffered = 0  # records in _chunks plus the batch the writer holds
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.written = Counter(
            "forestops_prediction_log_written",
            "Records written to prediction_log",
            registry=registry,
        )
        self.dropped = Counter(
            "forestops_prediction_log_dropped",
            "Records never written: buffer full while the database lagged, or left at shutdown",
            registry=registry,
        )
        self.errors = Counter(
            "forestops_prediction_log_write_errors",
            "Failed batch writes (each is retried)",
            registry=registry,
        )
        backlog = Gauge(
            "forestops_prediction_log_backlog",
            "Records waiting to be written to prediction_log",
            registry=registry,
        )
        backlog.set_function(lambda: self._buffered)

    def record(
        self,
        request_id: str,
        model_version: str,
        arrays: tuple[np.ndarray, np.ndarray, np.ndarray],
        prediction: np.ndarray,
        probability: np.ndarray,
        latency_ms: float,
    ) -> None:
        """Queue one request's records; never blocks on I/O, drops (counted) when full."""
        chunk = _Chunk(
            datetime.now(UTC), request_id, model_version, *arrays, prediction, probability,
            latency_ms,
        )  # fmt: skip
        with self._lock:
            if self._stopping or self._buffered + len(chunk) > self.capacity:
                self.dropped.inc(len(chunk))
                return
            self._chunks.append(chunk)
            self._buffered += len(chunk)
            if self._buffered >= _BATCH_RECORDS:
                self._wake.notify()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Write what is buffered (up to `timeout_s`), count the rest as dropped."""
        with self._lock:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout_s)
        with self._lock:
            self._discard_all()

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wake the writer and wait until the buffer is empty; False on timeout (tests, bench)."""
        with self._lock:
            self._wake.notify()
            return self._wake.wait_for(lambda: self._buffered == 0, timeout_s)

    def _run(self) -> None:
        delay = _RETRY_MIN_S
        batch: list[_Chunk] = []
        while True:
            with self._lock:
                if not batch:
                    if self._buffered < _BATCH_RECORDS and not self._stopping:
                        self._wake.wait(_LINGER_S)
                    if not self._chunks and self._stopping:
                        return
                    batch = self._take()
            if not batch:
                continue
            if self._write(batch):
                with self._lock:
                    self._buffered = max(0, self._buffered - sum(len(c) for c in batch))
                    self._wake.notify_all()
                batch = []
                delay = _RETRY_MIN_S
                continue
            with self._lock:
                if self._stopping:  # the database is down at shutdown: give up, counted
                    self._chunks.extendleft(reversed(batch))
                    return
                self._wake.wait(delay)
            delay = min(delay * 2, _RETRY_MAX_S)

    def _take(self) -> list[_Chunk]:
        batch: list[_Chunk] = []
        records = 0
        while self._chunks and records < _BATCH_RECORDS:
            chunk = self._chunks.popleft()
            batch.append(chunk)
            records += len(chunk)
        return batch

    def _write(self, batch: list[_Chunk]) -> bool:
        rows = [row for chunk in batch for row in chunk.rows()]
        try:
            if self.engine.dialect.name == "postgresql":
                self._copy(rows)
            else:  # the store is SQLite or PostgreSQL (store/loader.py)
                self._sqlite_insert(rows)
        except Exception as error:  # any database failure: keep the batch, retry later
            self.errors.inc()
            reason = str(error).splitlines()[0]  # not SQLAlchemy's echo of thousands of rows
            log.warning("prediction log: %d records not written yet: %s", len(rows), reason)
            return False
        self.written.inc(len(rows))
        return True

    def _copy(self, rows: list[tuple[object, ...]]) -> None:
        """PostgreSQL's COPY: measured 3.4 ms of CPU per 1,000 rows against ~18 ms for the
        executemany INSERT, CPU that would otherwise compete with requests for the GIL."""
        connection = self.engine.raw_connection()
        try:
            cursor = connection.driver_connection.cursor()  # type: ignore[union-attr]
            with cursor.copy(_COPY) as copy:
                for row in rows:
                    copy.write_row(row)
            connection.commit()
        finally:
            connection.close()

    def _sqlite_insert(self, rows: list[tuple[object, ...]]) -> None:
        """sqlite3's own executemany on ready tuples: SQLAlchemy Core's per-row parameter
        processing (JSON, DateTime) costs several times the insert itself."""
        connection = self.engine.raw_connection()
        try:
            connection.cursor().executemany(
                self._insert,
                [(_sqlite_time(row[0]), *row[1:]) for row in rows],
            )
            connection.commit()
        finally:
            connection.close()

    def _discard_all(self) -> None:
        if self._buffered:
            log.warning("prediction log: %d records dropped at shutdown", self._buffered)
            self.dropped.inc(self._buffered)
        self._chunks.clear()
        self._buffered = 0


def _sqlite_time(value: object) -> str:
    assert isinstance(value, datetime)
    return value.strftime(_SQLITE_TIME)


def _positional_insert(engine: Engine) -> str:
    """The INSERT for `_COLUMNS` tuples in this dialect's positional placeholders."""
    compiled = insert(prediction_log).compile(dialect=engine.dialect, column_keys=list(_COLUMNS))
    assert compiled.positiontup == list(_COLUMNS)
    return str(compiled)
