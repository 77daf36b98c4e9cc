"""Monitoring: the monitor's reports over time (per-feature drift, live accuracy), from the store.

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
from forestops.ui.i18n import feature_label, t
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
        column.metric(t(key), t("not_measured") if value is None else f"{value:.3f}")


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


if __name__ == "__main__":
    render()
