"""Analytics: interactive Plotly views of the ingested data.

Class counts and batch history are exact (aggregated in the database); the per-row charts work
on a random sample whose size the reader chooses, so the page stays fast on 300k rows.
"""

from __future__ import annotations

import math

import pandas as pd
import plotly.express as px
import streamlit as st

from forestops import contract
from forestops.config import get_settings
from forestops.ui import data
from forestops.ui.charts import class_colour_map, class_names, with_class_names
from forestops.ui.i18n import feature_label, number, t
from forestops.ui.section_guard import guard

SAMPLE_SIZES = (1_000, 2_000, 5_000, 10_000, 20_000, 50_000)
MARGIN = {"l": 10, "r": 10, "t": 40, "b": 10}
LAYOUT = {"height": 380, "margin": MARGIN}


def _class_distribution(url: str) -> None:
    counts = with_class_names(data.class_counts(url))
    figure = px.bar(
        counts,
        x="class",
        y="rows",
        color="class",
        color_discrete_map=class_colour_map(),
        category_orders={"class": class_names()},
        text_auto=True,
        title=t("class_distribution"),
        labels={"class": t("cover_type"), "rows": t("rows")},
    )
    figure.update_layout(showlegend=False, **LAYOUT)
    st.plotly_chart(figure, key="class_distribution")


def _batches(url: str) -> None:
    history = data.batch_history(url)
    if history.empty:
        st.info(t("no_batches_yet"))
        return
    long = history.melt(
        id_vars=["fetched_at", "batch_number", "id"],
        value_vars=["inserted", "duplicates", "quarantined"],
        var_name="outcome",
        value_name="rows",
    )
    long["outcome"] = long["outcome"].map(lambda outcome: t(f"outcome_{outcome}"))
    figure = px.bar(
        long,
        x="fetched_at",
        y="rows",
        color="outcome",
        hover_data={"batch_number": True, "id": True},
        title=t("rows_per_batch"),
        labels={
            "fetched_at": t("fetched_at"),
            "rows": t("rows"),
            "outcome": "",
            "batch_number": t("batch_number"),
            "id": t("batch_id"),
        },
        color_discrete_sequence=["#2e7d32", "#9e9e9e", "#c62828"],
    )
    figure.add_scatter(
        x=history["fetched_at"],
        y=history["cumulative"],
        name=t("cumulative_rows"),
        mode="lines+markers",
        yaxis="y2",
        line={"color": "#1565c0"},
    )
    figure.update_layout(
        yaxis2={"overlaying": "y", "side": "right", "title": t("cumulative_rows")},
        yaxis2_rangemode="tozero",
        xaxis_title_text="",
        legend={"orientation": "h", "y": -0.25},
        height=LAYOUT["height"],
        margin={**MARGIN, "b": 60},
    )
    st.plotly_chart(figure, key="rows_per_batch")


def _harvest_coverage(url: str) -> None:
    """How much of each batch the harvests collected (estimated); nothing when none ran."""
    harvests = data.harvest_coverage(url)
    if harvests.empty:
        return
    figure = px.bar(
        harvests.assign(batch=harvests["batch_number"].map(lambda n: f"#{n}")),
        x="fetched_at",
        y="estimated_coverage",
        hover_data={
            "batch": True,
            "group_number": True,
            "harvest_calls": True,
            "distinct_rows": ":,",
            "estimated_batch_size": ":,",
        },
        title=t("harvest_coverage"),
        labels={
            "fetched_at": t("fetched_at"),
            "estimated_coverage": t("estimated_coverage"),
            "batch": t("batch_number"),
            "group_number": t("group_number"),
            "harvest_calls": t("harvest_calls"),
            "distinct_rows": t("distinct_rows"),
            "estimated_batch_size": t("estimated_batch_size"),
        },
        color_discrete_sequence=["#2e7d32"],
    )
    figure.update_layout(
        yaxis_tickformat=".0%", yaxis_range=[0, 1.02], xaxis_title_text="", **LAYOUT
    )
    st.plotly_chart(figure, key="harvest_coverage")


def _feature_by_class(sample: pd.DataFrame) -> None:
    feature = st.selectbox(
        t("feature"), contract.FEATURE_NAMES, format_func=feature_label, key="distribution_feature"
    )
    figure = px.histogram(
        sample,
        x=feature,
        color="class",
        color_discrete_map=class_colour_map(),
        category_orders={"class": class_names()},
        barmode="overlay" if feature in contract.NUMERIC_NAMES else "group",
        opacity=0.65,
        nbins=50,
        title=t("feature_by_class", feature=feature_label(feature)),
        labels={feature: feature_label(feature), "class": t("cover_type")},
    )
    figure.update_layout(yaxis_title_text=t("rows"), **LAYOUT)
    st.plotly_chart(figure, key="feature_by_class")


def _scatter(sample: pd.DataFrame) -> None:
    choices = [name for name in contract.NUMERIC_NAMES if name != "elevation"]
    feature = st.selectbox(
        t("versus"),
        choices,
        index=choices.index("horizontal_distance_to_roadways"),
        format_func=feature_label,
        key="scatter_feature",
    )
    figure = px.scatter(
        sample,
        x=feature,
        y="elevation",
        color="class",
        color_discrete_map=class_colour_map(),
        category_orders={"class": class_names()},
        opacity=0.6,
        render_mode="webgl",
        title=t("elevation_vs", feature=feature_label(feature)),
        labels={
            feature: feature_label(feature),
            "elevation": feature_label("elevation"),
            "class": t("cover_type"),
        },
    )
    figure.update_traces(marker={"size": 4})
    figure.update_layout(**LAYOUT)
    st.plotly_chart(figure, key="elevation_scatter")


def _correlation(sample: pd.DataFrame) -> None:
    correlation = sample[list(contract.NUMERIC_NAMES)].astype(float).corr().round(2)
    names = [feature_label(name) for name in contract.NUMERIC_NAMES]
    figure = px.imshow(
        correlation.to_numpy(),
        x=names,
        y=names,
        zmin=-1,
        zmax=1,
        text_auto=True,
        color_continuous_scale="RdBu_r",
        title=t("correlation"),
        aspect="auto",
    )
    figure.update_layout(height=640, margin=MARGIN)
    st.plotly_chart(figure, key="correlation")


def _quarantine(url: str) -> None:
    st.subheader(t("quarantine_title"))
    reasons = data.quarantine_reasons(url)
    if reasons.empty:
        st.success(t("no_quarantine"), icon=":material/verified:")
        return
    by_column = reasons.assign(column=reasons["column"].replace("", t("whole_row")))
    totals = by_column.groupby("column", as_index=False)["rows"].sum().sort_values("rows")
    figure = px.bar(
        totals,
        x="rows",
        y="column",
        orientation="h",
        title=t("quarantine_by_column"),
        labels={"rows": t("rows"), "column": t("column")},
        color_discrete_sequence=["#c62828"],
    )
    figure.update_xaxes(tick0=0, dtick=max(1, math.ceil(totals["rows"].max() / 5)))
    figure.update_layout(**LAYOUT)
    chart, table = st.columns(2)
    with chart:
        st.plotly_chart(figure, key="quarantine_reasons")
    with table:
        st.dataframe(
            reasons.rename(
                columns={"column": t("column"), "reason": t("reason"), "rows": t("rows")}
            ),
            hide_index=True,
            key="quarantine_table",
        )


def render() -> None:
    url = get_settings().database_url
    st.title(t("analytics_title"))
    with guard("database"):
        overview = data.overview(url)
        if overview.rows == 0:
            st.info(t("analytics_empty"), icon=":material/hourglass_empty:")
        else:
            size = st.select_slider(
                t("sample_size"),
                options=SAMPLE_SIZES,
                value=5_000,
                format_func=number,
                key="sample_size",
                help=t("sample_size_help"),
            )
            sample = with_class_names(data.sample(url, size))
            st.caption(t("sample_caption", shown=number(len(sample)), total=number(overview.rows)))
            left, right = st.columns(2)
            with left:
                _class_distribution(url)
            with right:
                _batches(url)
            _harvest_coverage(url)
            left, right = st.columns(2)
            with left:
                _feature_by_class(sample)
            with right:
                _scatter(sample)
            _correlation(sample)
            _quarantine(url)
        if overview.rows == 0 and overview.batches:
            _batches(url)
            _quarantine(url)


if __name__ == "__main__":
    render()
