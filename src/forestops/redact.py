"""Secrets out of every URI that forestops shows or logs: the one helper the service and the UI use.

A URI can carry a secret in two places: its userinfo (`user:password@` before the host, and
just as often a bare token, `TOKEN@`) and its query (`?token=...`, `?X-Amz-Signature=...`).
`redact_uri` replaces the whole userinfo with `***` and the value of every query parameter whose
name says secret; `redact_text` does that to every URI inside a message (an MLflow error quotes
the tracking URI it called, password and all). `install_log_redaction` makes every log record of
the process pass through `redact_text`, whichever logger or handler it goes to.
"""

from __future__ import annotations

import logging
import re
from typing import Any

MASK = "***"
_URI = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://[^\s\"'<>`]*")
_SECRET_PARAMETER = re.compile(
    r"(?i)([?&;][^=&#\s]*(?:token|key|secret|pass|pwd|auth|sig|credential|session|code)"
    r"[^=&#\s]*=)[^&#\s]*"
)
_QUERY_MASK = rf"\g<1>{MASK}"


def redact_uri(uri: str) -> str:
    """`uri` without its userinfo and secret query values; anything else is left as it was."""
    scheme, separator, rest = uri.partition("://")
    if not separator:
        return uri
    ends = [index for index in (rest.find("?"), rest.find("#")) if index != -1]
    cut = min(ends, default=len(rest))
    location, tail = rest[:cut], rest[cut:]
    authority = location.split("/", 1)[0]
    if "@" in authority:
        location = f"{MASK}@{location[authority.rfind('@') + 1 :]}"
    elif "@" in location and ":" in location.partition("@")[0]:
        location = f"{MASK}@{location.partition('@')[2]}"  # a password with a '/' in it
    return f"{scheme}://{location}{_SECRET_PARAMETER.sub(_QUERY_MASK, tail)}"


def redact_text(text: str) -> str:
    """`text` with every URI in it redacted."""
    return _URI.sub(lambda match: redact_uri(match.group(0)), text) if "://" in text else text


def _redacted(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a broken format is for logging to report, as it does without this
        return
    if "://" in message:
        record.msg, record.args = redact_text(message), ()
    if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
        record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))


def install_log_redaction() -> None:
    """Redact every log record this process creates from now on (idempotent)."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "redacts", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _redacted(record)
        return record

    factory.redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
