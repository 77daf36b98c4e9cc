"""Settings / status: can the UI reach each service right now (live, uncached), which addresses it
uses, and the language."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import streamlit as st

from forestops.config import Settings, get_settings
from forestops.redact import redact_uri
from forestops.ui import data, registry
from forestops.ui.errors import DatabaseNotReady, MlflowNotReady
from forestops.ui.i18n import language_selector, number, t
from forestops.ui.inference import api_key, health
from forestops.ui.section_guard import summary


def _api(settings: Settings) -> None:
    state = health(settings)
    if not state.reachable:
        st.error(t("check_api_down", detail=state.detail or ""), icon=":material/cloud_off:")
    elif state.status == "ok":
        st.success(
            t("check_api_ok", version=state.model_version or "—"), icon=":material/check_circle:"
        )
    else:
        st.error(
            t("check_api_degraded", status=t(f"status_{state.status}"), detail=state.detail or ""),
            icon=":material/error:",
        )


def _check(name: str, probe: Callable[[], dict[str, object]], not_ready: type[Exception]) -> None:
    """One service's light: green with what it holds, amber while empty, red with the error."""
    try:
        found = probe()
    except not_ready as error:
        st.warning(t(f"check_{name}_empty", detail=str(error)), icon=":material/hourglass_empty:")
    except Exception as error:
        st.error(t(f"check_{name}_down", error=summary(error)), icon=":material/error:")
    else:
        st.success(t(f"check_{name}_ok", **found), icon=":material/check_circle:")


def _database_figures(settings: Settings) -> dict[str, object]:
    overview = data.connectivity(settings.database_url)
    return {"rows": number(overview.rows), "batches": number(overview.source_batches)}


def _mlflow_figures(settings: Settings) -> dict[str, object]:
    runs, versions = registry.connectivity(settings)
    return {"runs": runs, "versions": versions}


def render() -> None:
    settings = get_settings()
    st.title(t("status_title"))
    st.caption(t("status_caption"))
    api, database, mlflow = st.columns(3)
    with api:
        st.markdown(f"**{t('inference_api')}**")
        _api(settings)
    with database:
        st.markdown(f"**{t('database')}**")
        _check("db", partial(_database_figures, settings), DatabaseNotReady)
    with mlflow:
        st.markdown(f"**{t('mlflow')}**")
        _check("mlflow", partial(_mlflow_figures, settings), MlflowNotReady)
    if st.button(t("check_again"), icon=":material/refresh:", key="check_again"):
        st.cache_data.clear()
        st.rerun()

    st.subheader(t("configuration"))
    st.dataframe(
        {
            t("setting"): [
                "INFERENCE_API_URL",
                "DATABASE_URL",
                "MLFLOW_TRACKING_URI",
                "MLFLOW_URL",
                "MODEL_NAME",
                "MLFLOW_ENABLE_MODEL_REGISTRY",
                "UI_API_KEY / API_KEYS",
            ],
            t("value"): [
                # no userinfo or query token in a screenshot of this page
                redact_uri(settings.inference_api_url),
                redact_uri(settings.database_url),
                redact_uri(settings.mlflow_tracking_uri),
                redact_uri(settings.mlflow_url),
                settings.model_name,
                str(settings.mlflow_enable_model_registry).lower(),
                t("key_configured") if api_key(settings) else t("key_none"),
            ],
        },
        hide_index=True,
        key="configuration",
    )
    st.subheader(t("language"))
    language_selector(st.container(), key="language_settings")


if __name__ == "__main__":
    render()
