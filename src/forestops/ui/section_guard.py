"""Turn failures into plain sentences: a person using the UI never sees a traceback.

Each page is built from independent sections (`with guard("database"): ...`): when one source is
down or empty, that section says so and the rest of the page still renders. The entry app wraps
the whole page the same way as a last line of defence. Full details go to the server log.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal, get_args

import streamlit as st

from forestops.redact import redact_text
from forestops.ui.errors import DatabaseNotReady, MlflowNotReady
from forestops.ui.i18n import t
from forestops.ui.inference import ApiError

log = logging.getLogger(__name__)

Source = Literal["database", "mlflow", "api", "page"]
SOURCES: tuple[Source, ...] = get_args(Source)


def summary(error: BaseException, limit: int = 300) -> str:
    """One line a person can pass on: the error type and the first line of its message, with
    no secret of a URI in it."""
    lines = redact_text(str(error)).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


@contextmanager
def guard(source: Source) -> Iterator[None]:
    try:
        yield
    except DatabaseNotReady as error:
        st.info(t("database_not_ready", detail=str(error)), icon=":material/database:")
    except MlflowNotReady as error:
        st.info(t("mlflow_not_ready", detail=str(error)), icon=":material/science:")
    except ApiError as error:
        show_api_error(error)
    except Exception as error:
        log.exception("UI section %s failed", source)
        st.error(t(f"{source}_failed", error=summary(error)), icon=":material/error:")


def _problem_lines(detail: Any, limit: int = 20) -> list[str]:
    """FastAPI's 422 items ({"loc": ["body", 3, "elevation"], "msg": ...}) as "3 → elevation: msg"."""
    items = detail if isinstance(detail, list) else [detail]
    lines = []
    for item in items[:limit]:
        if isinstance(item, dict) and "msg" in item:
            where = [str(part) for part in item.get("loc", ()) if part not in ("body", "file")]
            lines.append(f"{' → '.join(where)}: {item['msg']}" if where else str(item["msg"]))
        else:
            lines.append(str(item))
    if len(items) > limit:
        lines.append(t("more_problems", count=len(items) - limit))
    return lines


def show_api_error(error: ApiError) -> None:
    if error.kind == "unreachable":
        st.error(t("api_unreachable", detail=error.detail), icon=":material/cloud_off:")
    elif error.kind == "no_model":
        st.warning(t("api_no_model", detail=error.detail), icon=":material/hourglass_empty:")
    elif error.kind == "rejected":
        lines = "\n".join(f"- {line}" for line in _problem_lines(error.detail))
        st.error(f"{t('api_rejected')}\n\n{lines}", icon=":material/rule:")
    elif error.kind == "too_large":
        st.error(t("api_too_large", detail=error.detail), icon=":material/data_thresholding:")
    elif error.kind == "unauthorized":
        st.error(t("api_unauthorized"), icon=":material/key_off:")
    else:
        st.error(
            t("api_server_error", status=error.status_code, detail=error.detail),
            icon=":material/error:",
        )
