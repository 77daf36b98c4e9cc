"""Home: what forestops is, live figures from every source, and the seven cover types."""

from __future__ import annotations

import streamlit as st

from forestops import contract
from forestops.config import get_settings
from forestops.ui import data, registry
from forestops.ui.charts import CLASS_COLOURS
from forestops.ui.i18n import class_description, class_label, number, percent, t
from forestops.ui.inference import recent_health, recent_metadata
from forestops.ui.section_guard import guard


def _data_figures(database_url: str) -> None:
    with guard("database"):
        overview = data.overview(database_url)
        rows, batches, last = st.columns(3)
        rows.metric(t("rows_ingested"), number(overview.rows))
        batches.metric(
            t("batches"),
            number(overview.source_batches),
            help=t("batches_help", records=number(overview.batches)),
        )
        when = overview.last_fetched_at
        last.metric(t("last_ingestion"), when.strftime("%Y-%m-%d %H:%M") if when else "—")
        if overview.rows == 0:
            st.info(t("no_rows_yet"), icon=":material/hourglass_empty:")


def _model_figures() -> None:
    settings = get_settings()
    health = recent_health(settings)
    api, version, accuracy = st.columns(3)
    api.metric(t("api_status"), t(f"status_{health.status}") if health.reachable else t("down"))
    if health.reachable and health.model_loaded:
        with guard("api"):
            served = recent_metadata(settings)
            version.metric(t("champion_version"), served.get("model_version") or "—")
            score = (served.get("metrics") or {}).get("accuracy")
            accuracy.metric(t("accuracy"), percent(score) if score is not None else "—")
        return
    if health.reachable:
        st.warning(
            t("predict_no_model", detail=health.detail or ""), icon=":material/hourglass_empty:"
        )
    else:
        st.warning(t("home_api_down"), icon=":material/cloud_off:")
    with guard("mlflow"):
        champion = registry.champion(settings)
        if champion is None:
            st.info(t("no_champion_yet"), icon=":material/hourglass_empty:")
            return
        version.metric(t("champion_version"), champion.version or champion.run_id[:8])
        score = champion.metrics.get("accuracy")
        accuracy.metric(t("accuracy"), percent(score) if score is not None else "—")


def _cover_types() -> None:
    st.subheader(t("cover_types_title"))
    columns = st.columns(4)
    for cover in contract.COVER_TYPES:
        with columns[cover.id % 4].container(border=True):
            st.markdown(
                f"<span style='color:{CLASS_COLOURS[cover.id]};font-size:1.4em'>●</span> "
                f"**{cover.id} · {class_label(cover.id)}**",
                unsafe_allow_html=True,
            )
            st.caption(class_description(cover.id))


def render() -> None:
    st.title(":material/forest: forestops")
    st.markdown(t("home_intro"))
    _data_figures(get_settings().database_url)
    _model_figures()
    st.page_link("views/predict.py", label=t("home_go_predict"), icon=":material/psychology:")
    _cover_types()


if __name__ == "__main__":
    render()
