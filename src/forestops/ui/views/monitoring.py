"""Monitoring: the monitor's reports over time (per-feature drift, live accuracy), and what the
champion relies on in the latest one (training vs served, `pipeline.reliance`), from the store.

The page only reads `monitoring_reports`: the monitor job writes them (hourly in `forestops up`
and Airflow, or `forestops monitor`), so opening the page never loads a model or scans rows.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.express as px
import streamlit as st

from forestops.config import get_settings
from forestops.ui import data
from forestops.ui.i18n import feature_label, number, t
from forestops.ui.section_guard import guard

LAYOUT = {"height": 380, "margin": {"l": 10, "r": 10, "t": 40, "b": 10}}
SOURCES = ("served", "ingested")


def _latest(report: dict[str, Any]) -> None:
    when = pd.Timestamp(report["created_at"]).strftime("%Y-%m-%d %H:%M")
    if report["alert"]:
        reasons = "\n".join(f"- {reason}" for reason in report["reasons"])
        st.error(f"{t('monitoring_alert', time=when)}\n\n{reasons}", icon=":material/warning:")
    else:
        st.success(t("monitoring_ok", time=when), icon=":material/check_circle:")
    columns = st.columns(3)
    for column, key, value in zip(
        columns,
        ("live_accuracy", "training_accuracy", "prediction_shift"),
        (report["live_accuracy"], report["reference_accuracy"], report["prediction_shift"]),
        strict=True,
    ):
        column.metric(t(key), t("not_measured") if value is None else number(value, 3))


def _drift_chart(reports: list[dict[str, Any]], threshold: float) -> None:
    source = st.segmented_control(
        t("drift_source"),
        SOURCES,
        default="served",
        format_func=lambda name: t(f"source_{name}"),
        key="drift_source",
    )
    rows = [
        {"time": report["created_at"], "feature": feature_label(feature), "psi": psi}
        for report in reports
        for feature, psi in report["feature_drift"].get(source or "served", {}).items()
    ]
    if not rows:
        st.info(t("not_measured"))
        return
    figure = _over_time(
        rows, "psi", "feature", "drift_over_time", {"psi": "PSI", "feature": t("feature")}
    )
    figure.add_hline(y=threshold, line_dash="dash", line_color="#c62828")
    st.plotly_chart(figure, key="drift_over_time")


def _accuracy_chart(reports: list[dict[str, Any]]) -> None:
    rows = [
        {"time": report["created_at"], "series": t(key), "accuracy": report[column]}
        for report in reports
        for key, column in (
            ("live_accuracy", "live_accuracy"),
            ("training_accuracy", "reference_accuracy"),
        )
        if report[column] is not None
    ]
    if not rows:
        return
    labels = {"accuracy": t("accuracy"), "series": ""}
    figure = _over_time(rows, "accuracy", "series", "accuracy_over_time", labels)
    st.plotly_chart(figure, key="accuracy_over_time")


def _reliance(report: dict[str, Any]) -> None:
    """The latest report's shares of mean |contribution| per feature, training beside served."""
    st.subheader(t("reliance_title"))
    compared = report.get("reliance") or {}
    if not compared.get("features"):
        st.info(t("reliance_skipped", note=compared.get("note") or t("not_measured")))
        return
    training_total = sum(v["training"] for v in compared["features"].values())
    served_total = sum(v["served"] for v in compared["features"].values())
    table = pd.DataFrame(
        {
            t("feature"): feature_label(feature),
            t("reliance_training"): values["training"] / training_total,
            t("reliance_served"): values["served"] / served_total,
            t("reliance_shift"): values["shift"],
        }
        for feature, values in compared["features"].items()
    ).sort_values(t("reliance_training"))
    figure = px.bar(
        table.melt(
            id_vars=[t("feature")],
            value_vars=[t("reliance_training"), t("reliance_served")],
            var_name="data",
            value_name="share",
        ),
        x="share",
        y=t("feature"),
        color="data",
        barmode="group",
        orientation="h",
        labels={"share": t("reliance_share"), "data": ""},
        color_discrete_sequence=["#2e7d32", "#1565c0"],
    )
    figure.update_layout(height=480, margin={"l": 10, "r": 10, "t": 30, "b": 10})
    figure.update_xaxes(tickformat=".0%")
    st.plotly_chart(figure, key="reliance_chart")
    caption = t("reliance_caption", rows=compared["rows"], total=number(compared["total_shift"], 3))
    st.caption(caption)
    percent = st.column_config.NumberColumn(format="percent")
    st.dataframe(
        table.iloc[::-1],
        hide_index=True,
        column_config={
            t("reliance_training"): percent,
            t("reliance_served"): percent,
            t("reliance_shift"): st.column_config.NumberColumn(format="%+.3f"),
        },
    )


def _over_time(
    rows: list[dict[str, Any]], y: str, color: str, title: str, labels: dict[str, str]
) -> Any:
    """One line per `color` value across the reports' times."""
    figure = px.line(
        pd.DataFrame(rows),
        x="time",
        y=y,
        color=color,
        markers=True,
        title=t(title),
        labels={"time": t("report_time"), **labels},
    )
    figure.update_layout(**LAYOUT)
    return figure


def render() -> None:
    settings = get_settings()
    st.title(t("monitoring_title"))
    st.caption(t("monitoring_intro", threshold=settings.monitor_psi_threshold))
    with guard("database"):
        reports = data.monitoring_history(settings.database_url)
        if not reports:
            st.info(t("monitoring_no_reports"), icon=":material/monitor_heart:")
            return
        _latest(reports[-1])
        _drift_chart(reports, settings.monitor_psi_threshold)
        _accuracy_chart(reports)
        _reliance(reports[-1])


if __name__ == "__main__":
    render()
