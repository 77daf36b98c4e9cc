"""The Covertype data set as one canonical DataFrame, whatever file it came from.

Two formats arrive here: the course's CSV (CamelCase header, `Rawah`, `C7745`, labels 0..6) and
UCI's `covtype.data` (no header, 4 + 40 one-hot columns, labels 1..7). Both become the contract's
columns with canonical categories and labels 0..6. A file that breaks the contract is an error
naming the first bad row, never silently cleaned: the data API would otherwise serve rows that
ingestion later quarantines, and nobody would know which side was wrong.

Parsing ~300k rows costs about a second, so `load_dataset` keeps a parquet copy in
FORESTOPS_HOME keyed by the source file's path, size and mtime.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
from pathlib import Path
from typing import Final

import httpx
import numpy as np
import pandas as pd

from forestops import contract
from forestops.config import Settings

log = logging.getLogger(__name__)

FRAME_DTYPES: Final = {
    **dict.fromkeys(contract.NUMERIC_NAMES, "int64"),
    **dict.fromkeys(contract.CATEGORICAL_NAMES, "str"),
    contract.LABEL: "int64",
}
"""Column dtypes of every canonical frame (data set, validated batches)."""

_CACHE_FORMAT = 1  # bump when the canonical frame changes shape, to invalidate old caches
_UCI_COLUMNS = (
    len(contract.NUMERIC_NAMES) + len(contract.WILDERNESS_AREAS) + len(contract.SOIL_TYPES) + 1
)


class DatasetError(ValueError):
    """The data set file is missing, of an unknown format, or breaks the contract."""


def load_dataset(settings: Settings) -> pd.DataFrame:
    """The canonical data set: FORESTOPS_DATASET, or UCI Covertype downloaded once into the home."""
    source = settings.forestops_dataset or download_uci(settings)
    source = source.expanduser().resolve()
    if not source.is_file():
        raise DatasetError(f"data set not found: {source}")
    cache = _cache_path(settings, source)
    if cache.is_file():
        return pd.read_parquet(cache)
    frame = read_dataset(source)
    _write_cache(frame, cache)
    log.info("data set: %d rows from %s (parsed copy cached at %s)", len(frame), source, cache)
    return frame


def read_dataset(path: Path, nrows: int | None = None) -> pd.DataFrame:
    """Parse a course CSV(.gz) or UCI covtype.data(.gz) into the canonical frame (first `nrows`)."""
    first_line = _first_line(path)
    fields = first_line.split(",")
    if len(fields) == _UCI_COLUMNS and all(field.strip().isdigit() for field in fields):
        return _from_uci(pd.read_csv(path, header=None, nrows=nrows), path)
    if contract.canonical_column(fields[0]) in contract.COLUMNS:
        return canonical_frame(pd.read_csv(path, nrows=nrows), path)
    raise DatasetError(
        f"{path}: neither a course CSV (header starting with Elevation) nor UCI covtype.data "
        f"({_UCI_COLUMNS} numeric columns); first line: {first_line[:120]!r}"
    )


def canonical_frame(frame: pd.DataFrame, origin: object = "data set") -> pd.DataFrame:
    """Rename course columns, canonicalise categories, check types and bounds (vectorised)."""
    frame = frame.rename(columns=contract.canonical_column)
    missing = [name for name in contract.COLUMNS if name not in frame.columns]
    if missing:
        raise DatasetError(f"{origin}: missing columns {', '.join(missing)}")
    columns: dict[str, pd.Series] = {}
    for name in contract.NUMERIC_NAMES:
        spec = contract.NUMERIC_BY_NAME[name]
        values = _integers(frame[name], origin)
        _fail_on(frame[name], ~values.between(spec.minimum, spec.maximum), origin, name)
        columns[name] = values
    for name in contract.CATEGORICAL_NAMES:
        columns[name] = _canonical_categories(frame[name], name, origin)
    labels = _integers(frame[contract.LABEL], origin)
    _fail_on(frame[contract.LABEL], ~labels.isin(contract.CLASS_IDS), origin, contract.LABEL)
    columns[contract.LABEL] = labels
    return pd.DataFrame(columns).astype(FRAME_DTYPES).reset_index(drop=True)


def download_uci(settings: Settings) -> Path:
    """Download UCI Covertype once (kept in FORESTOPS_HOME; later calls reuse the file)."""
    target = settings.ensure_home() / "covtype.data.gz"
    if target.is_file():
        return target
    partial = target.with_name(target.name + ".part")
    log.info("downloading the UCI Covertype data set from %s", settings.dataset_download_url)
    try:
        with (
            httpx.stream(
                "GET", settings.dataset_download_url, follow_redirects=True, timeout=60
            ) as response,
            partial.open("wb") as out,
        ):
            response.raise_for_status()
            for chunk in response.iter_bytes(1 << 20):
                out.write(chunk)
    except httpx.HTTPError as error:
        partial.unlink(missing_ok=True)
        raise DatasetError(
            f"could not download {settings.dataset_download_url}: {error}; "
            "set FORESTOPS_DATASET to a local copy"
        ) from error
    partial.replace(target)
    return target


def _first_line(path: Path) -> str:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8-sig") as handle:
            return handle.readline().strip()
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"cannot read data set {path}: {error}") from error


def _from_uci(raw: pd.DataFrame, origin: object) -> pd.DataFrame:
    n_numeric, n_areas = len(contract.NUMERIC_NAMES), len(contract.WILDERNESS_AREAS)
    values = raw.to_numpy(dtype=np.int64)
    areas = values[:, n_numeric : n_numeric + n_areas]
    soils = values[:, n_numeric + n_areas : -1]
    for name, one_hot in (("wilderness_area", areas), ("soil_type", soils)):
        bad = np.flatnonzero((one_hot.sum(axis=1) != 1) | ((one_hot != 0) & (one_hot != 1)).any(1))
        if bad.size:
            raise DatasetError(
                f"{origin}: row {bad[0] + 1}: {name} is not exactly one-hot ({bad.size} such rows)"
            )
    frame = pd.DataFrame(values[:, :n_numeric], columns=list(contract.NUMERIC_NAMES))
    area_codes = np.array([c.code for c in contract.WILDERNESS_AREAS], dtype=object)
    soil_codes = np.array([c.code for c in contract.SOIL_TYPES], dtype=object)
    frame["wilderness_area"] = area_codes[areas.argmax(axis=1)]
    frame["soil_type"] = soil_codes[soils.argmax(axis=1)]
    frame[contract.LABEL] = values[:, -1] - 1  # UCI numbers the classes 1..7
    return canonical_frame(frame, origin)


def _integers(values: pd.Series, origin: object) -> pd.Series:
    if pd.api.types.is_integer_dtype(values.dtype):
        return values.astype("int64")
    numbers = pd.to_numeric(values, errors="coerce")
    _fail_on(values, numbers.isna() | (numbers % 1 != 0), origin, str(values.name))
    return numbers.astype("int64")


def _canonical_categories(values: pd.Series, feature: str, origin: object) -> pd.Series:
    canonical: dict[object, str] = {}
    for value in values.unique():
        try:
            canonical[value] = contract.canonical_category(feature, value)
        except ValueError as error:
            raise DatasetError(
                f"{origin}: row {_first_row(values.isin([value]))}: {error}"
            ) from None
    return values.map(canonical)


def _fail_on(values: pd.Series, bad: pd.Series, origin: object, name: str) -> None:
    if not bad.any():
        return
    first = _first_row(bad)
    value = values.iloc[first - 1]
    reason = f"{name}={value!r} breaks the contract"
    try:  # the contract's own wording where it has one
        if name == contract.LABEL:
            contract.parse_label(value)
        else:
            contract.parse_int(name, value)
    except ValueError as error:
        reason = str(error)
    raise DatasetError(f"{origin}: row {first}: {reason} ({int(bad.sum())} bad rows in {name})")


def _first_row(mask: pd.Series) -> int:
    """1-based data row (after any header) of the first True."""
    return int(np.flatnonzero(mask.to_numpy())[0]) + 1


def _cache_path(settings: Settings, source: Path) -> Path:
    stat = source.stat()
    key = f"{_CACHE_FORMAT}|{source}|{stat.st_size}|{stat.st_mtime_ns}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return settings.forestops_home / "cache" / f"dataset-{digest}.parquet"


def _write_cache(frame: pd.DataFrame, cache: Path) -> None:
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_name(f"{cache.name}.{os.getpid()}.part")
    frame.to_parquet(partial, index=False)
    partial.replace(cache)
    for stale in cache.parent.glob("dataset-*.parquet"):
        if stale != cache:
            stale.unlink(missing_ok=True)
