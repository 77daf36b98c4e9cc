"""Validation errors that cost the service no more than the request did.

A 422 used to list every error with its whole `input`: 30 KB of `[{}, ...]` became 11 MB of
answer (twelve "missing" errors per record, each echoing the record), and 16 MB of records with
one long string became 221 MB. Here an answer lists at most `MAX_ERRORS` entries, the last one
saying how many more were found, and every echoed input or message is cut to a few dozen
characters (a small object or list is kept as it came; a large one becomes a cut JSON sketch).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

MAX_ERRORS = 50
INPUT_CHARS = 40
MESSAGE_CHARS = 400  # a category error ends with the accepted codes: keep its head and its tail


class _Full(Exception):
    pass


def brief(value: Any, limit: int = INPUT_CHARS) -> Any:
    """`value` if it is short, else a cut text of it (strings keep their first `limit` chars)."""
    if isinstance(value, str):
        return value if len(value) <= limit else f"{value[:limit]}… ({len(value):,} characters)"
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, int):
        return value if value.bit_length() <= 64 else f"<{value.bit_length()}-bit integer>"
    sketch = _sketch(value, limit)
    return value if sketch is None else sketch


def brief_message(text: str, limit: int = MESSAGE_CHARS) -> str:
    if len(text) <= limit:
        return text
    head = limit // 3
    return f"{text[:head]} … {text[len(text) - (limit - head) :]}"


def _scalar(value: Any, limit: int) -> str:
    if isinstance(value, str):
        return orjson.dumps(value[: limit + 1]).decode()
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"<{value.bit_length()}-bit integer>"
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return f"<{type(value).__name__}>"


def _sketch(value: Any, limit: int) -> str | None:
    """Compact JSON text of `value` cut after `limit` characters, or None when it fits: only as
    much of a huge object is ever written as the cut keeps."""
    parts: list[str] = []
    size = 0

    def put(text: str) -> None:
        nonlocal size
        parts.append(text)
        size += len(text)
        if size > limit:
            raise _Full

    def walk(item: Any) -> None:
        if isinstance(item, dict):
            put("{")
            for index, (key, inner) in enumerate(item.items()):
                put(("," if index else "") + _scalar(str(key), limit) + ":")
                walk(inner)
            put("}")
        elif isinstance(item, list | tuple):
            put("[")
            for index, inner in enumerate(item):
                if index:
                    put(",")
                walk(inner)
            put("]")
        else:
            put(_scalar(item, limit))

    try:
        walk(value)
    except _Full:
        return "".join(parts)[:limit] + "…"
    return None


def bounded(entry: dict[str, Any]) -> dict[str, Any]:
    """One error entry with its input and message cut."""
    shown = {**entry, "msg": brief_message(str(entry.get("msg", "")))}
    if "input" in entry:
        shown["input"] = brief(entry["input"])
    return shown


def capped(entries: Iterable[dict[str, Any]], total: int, loc: list[Any]) -> list[dict[str, Any]]:
    """At most MAX_ERRORS bounded entries; when `total` is more, a last one saying how many more."""
    shown = [bounded(entry) for _, entry in zip(range(MAX_ERRORS), entries, strict=False)]
    if total > len(shown):
        more = total - len(shown)
        shown.append(
            {
                "type": "too_many_errors",
                "loc": loc,
                "msg": f"{more:,} more error(s) not listed (at most {MAX_ERRORS} are)",
                "input": None,
            }
        )
    return shown
