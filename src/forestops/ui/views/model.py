"""Model: what is served, how the last training's candidates compared, where the champion errs,
every promotion decision the registry recorded, and (signed-in operators only) the actions on it."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.express as px
import streamlit as st

from forestops.config import Settings, get_settings
from forestops.redact import redact_uri
from forestops.ui import data, operator_panel, registry
from forestops.ui.charts import confusion_chart
from forestops.ui.i18n import feature_label, percent, t
from forestops.ui.inference import recent_health, recent_metadata
from forestops.ui.section_guard import guard


def _metrics_row(metrics: dict[str, Any]) -> None:
    shown = [name for name in ("accuracy", "macro_f1") if metrics.get(name) is not None]
    for column, name in zip(st.columns(max(len(shown), 1)), shown, strict=False):
        column.metric(t(name), percent(float(metrics[name])))


def _served(settings: Settings) -> str | None:
    """The API's own account of the model it serves; its version, when there is one."""
    st.subheader(t("served_model"))
    if not recent_health(settings).reachable:
        st.warning(
            t("model_api_down", url=redact_uri(settings.inference_api_url)),
            icon=":material/cloud_off:",
        )
        return None
    with guard("api"):
        served = recent_metadata(settings)
        name, version, alias = st.columns(3)
        name.metric(t("model_name"), served.get("model_name") or "—")
        version.metric(t("model_version"), str(served.get("model_version") or "—"))
        alias.metric(t("alias"), served.get("alias") or "—")
        when = served.get("trained_at")
        st.caption(
            t(
                "served_caption",
                trained=f"{pd.Timestamp(when):%Y-%m-%d %H:%M}" if when else "—",
                run=served.get("run_id") or "—",
                uri=served.get("model_uri") or "—",
            )
        )
        _metrics_row(served.get("metrics") or {})
        with st.expander(t("details")):
            st.json(
                {
                    "model_uri": served.get("model_uri"),
                    "run_id": served.get("run_id"),
                    "params": served.get("params"),
                    "lineage": served.get("lineage"),
                },
                expanded=False,
            )
        return str(served.get("model_version")) if served.get("model_version") else None
    return None


def _registry_champion(settings: Settings, served_version: str | None) -> str | None:
    """The champion according to MLflow; its run id, for the confusion matrix."""
    st.subheader(t("registry_champion"))
    with guard("mlflow"):
        champion = registry.champion(settings)
        if champion is None:
            st.info(t("no_champion_yet"), icon=":material/hourglass_empty:")
            return None
        label = champion.version or t("best_run")
        st.markdown(t("champion_line", version=label, run=champion.run_id, uri=champion.uri))
        if served_version and champion.version and served_version != champion.version:
            st.warning(t("champion_not_served", served=served_version, champion=champion.version))
        if served_version is None:
            _metrics_row(champion.metrics)
        return champion.run_id
    return None


def _last_training(settings: Settings) -> registry.Training | None:
    st.subheader(t("last_training"))
    with guard("mlflow"):
        training = registry.last_training(settings)
        if training is None:
            st.info(t("no_training_yet"), icon=":material/hourglass_empty:")
            return None
        st.caption(
            t(
                "training_caption",
                name=training.run_name,
                started=training.started_at.strftime("%Y-%m-%d %H:%M UTC"),
                status=training.status,
            )
        )
        candidates = training.candidates
        if candidates.empty:
            st.info(t("no_candidates"))
            return training
        st.dataframe(
            candidates,
            hide_index=True,
            key="candidates_table",
            column_config={
                "candidate": t("candidate"),
                "accuracy": st.column_config.NumberColumn(t("accuracy"), format="percent"),
                "macro_f1": st.column_config.NumberColumn(t("macro_f1"), format="percent"),
                "fit_seconds": st.column_config.NumberColumn(t("fit_seconds"), format="%.1f s"),
                "status": t("status"),
                "run_id": t("run_id"),
            },
        )
        scores = candidates.melt(
            id_vars=["candidate"], value_vars=["accuracy", "macro_f1"], var_name="metric"
        ).dropna()
        scores["metric"] = scores["metric"].map(t)
        figure = px.bar(
            scores,
            x="candidate",
            y="value",
            color="metric",
            barmode="group",
            text_auto=".1%",
            title=t("candidates_compared"),
            labels={"candidate": t("candidate"), "value": "", "metric": ""},
            color_discrete_sequence=["#2e7d32", "#81c784"],
        )
        figure.update_layout(height=360, yaxis_tickformat=".0%", yaxis_range=[0, 1])
        st.plotly_chart(figure, key="candidates_chart")
        return training
    return None


def _confusion(settings: Settings, run_ids: tuple[str, ...]) -> None:
    st.subheader(t("confusion_matrix"))
    if not run_ids:
        st.info(t("no_confusion_matrix"))
        return
    with guard("mlflow"):
        found = registry.confusion_matrix(settings, run_ids)
        if found is None:
            st.info(t("no_confusion_matrix"))
        elif found.matrix is not None:
            st.plotly_chart(confusion_chart(found.matrix), key="confusion_chart")
        elif found.image is not None:
            st.image(found.image, caption=found.source, width=720)


def _global_explanation(settings: Settings, run_ids: tuple[str, ...]) -> None:
    st.subheader(t("global_importance"))
    with guard("mlflow"):
        found = registry.global_explanation(settings, run_ids) if run_ids else None
        if found is None:
            st.info(t("no_global_importance"))
            return
        table = found.table.assign(label=found.table["feature"].map(feature_label))
        figure = px.bar(
            table.iloc[::-1],
            x="mean_abs_contribution",
            y="label",
            orientation="h",
            labels={"mean_abs_contribution": t("mean_abs_contribution"), "label": t("feature")},
        )
        figure.update_traces(marker_color="#2e7d32")
        figure.update_layout(height=420, margin={"l": 10, "r": 10, "t": 30, "b": 10})
        st.plotly_chart(figure, key="global_importance_chart")
        st.caption(t("global_importance_caption"))
        if found.dependence is not None:
            with st.expander(t("dependence_plots")):
                st.image(found.dependence)


def _history(settings: Settings) -> None:
    st.subheader(t("version_history"))
    if not settings.mlflow_enable_model_registry:
        st.info(t("registry_disabled"))
        return
    with guard("mlflow"):
        history = registry.version_history(settings)
        if history.empty:
            st.info(t("no_versions_yet"))
            return
        decisions = {"promoted": t("decision_promoted"), "rejected": t("decision_rejected")}
        shown = history.assign(decision=history["decision"].map(lambda d: decisions.get(d, d)))
        st.dataframe(
            shown,
            hide_index=True,
            key="version_history",
            column_config={
                "version": t("model_version"),
                "created": st.column_config.DatetimeColumn(t("created"), format="YYYY-MM-DD HH:mm"),
                "decision": t("decision"),
                "challenger_accuracy": st.column_config.NumberColumn(
                    t("challenger_accuracy"), format="percent"
                ),
                "champion_accuracy": st.column_config.NumberColumn(
                    t("champion_accuracy"), format="percent"
                ),
                "aliases": t("alias"),
                "run_id": t("run_id"),
            },
        )


def _audit_trail(settings: Settings) -> None:
    st.subheader(t("audit_trail"))
    st.caption(t("audit_caption"))
    with guard("database"):
        trail = data.model_audit(settings.database_url, settings.model_name)
        if trail.empty:
            st.info(t("no_audit_yet"))
            return
        st.dataframe(
            trail,
            hide_index=True,
            key="model_audit",
            column_config={
                "created_at": st.column_config.DatetimeColumn(
                    t("audit_when"), format="YYYY-MM-DD HH:mm:ss"
                ),
                **{
                    name: t(f"audit_{label}")
                    for name, label in (
                        ("action", "action"),
                        ("from_version", "from"),
                        ("to_version", "to"),
                        ("outcome", "outcome"),
                        ("actor", "actor"),
                        ("reason", "reason"),
                        ("detail", "detail"),
                    )
                },
            },
        )


def render() -> None:
    settings = get_settings()
    st.title(t("model_title"))
    st.link_button(t("open_mlflow"), settings.mlflow_url, icon=":material/open_in_new:")
    served_version = _served(settings)
    mlflow_ready = False
    with guard("mlflow"):
        registry.client(settings)
        mlflow_ready = True
    if mlflow_ready:  # otherwise said once above, not once per section
        champion_run = _registry_champion(settings, served_version)
        training = _last_training(settings)
        runs = tuple(run for run in (champion_run, training and training.run_id) if run)
        _confusion(settings, runs)
        _global_explanation(settings, runs)
        _history(settings)
    operator_panel.render(settings)  # only with OPERATIONS_API_URL, acting only once signed in
    _audit_trail(settings)  # the app database: readable while MLflow is not


if __name__ == "__main__":
    render()
