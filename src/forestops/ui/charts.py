"""Plotly figures shared by the pages, with one colour per cover type everywhere (a person learns
"purple is Krummholz" once) and class names in the reader's language."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from forestops import contract
from forestops.ui.i18n import class_label, number, t

CLASS_COLOURS: tuple[str, ...] = (
    "#1b5e20",  # Spruce/Fir: dark green
    "#66bb6a",  # Lodgepole Pine: green
    "#ef6c00",  # Ponderosa Pine: orange
    "#29b6f6",  # Cottonwood/Willow: blue (riparian)
    "#fbc02d",  # Aspen: yellow
    "#6d4c41",  # Douglas-fir: brown
    "#7e57c2",  # Krummholz: purple
)


def class_names() -> list[str]:
    return [class_label(class_id) for class_id in contract.CLASS_IDS]


def class_colour_map() -> dict[str, str]:
    return dict(zip(class_names(), CLASS_COLOURS, strict=True))


def with_class_names(frame: pd.DataFrame, column: str = contract.LABEL) -> pd.DataFrame:
    """A copy with a "class" column holding the localised name of each label."""
    names = class_names()
    return frame.assign(**{"class": frame[column].astype(int).map(names.__getitem__)})


def probability_chart(probabilities: Sequence[float], chosen: int) -> go.Figure:
    names = class_names()
    frame = pd.DataFrame({"class": names, "probability": list(probabilities)})
    figure = px.bar(
        frame,
        x="probability",
        y="class",
        orientation="h",
        color="class",
        color_discrete_map=class_colour_map(),
        category_orders={"class": names},
        range_x=[0, 1],
        text_auto=".1%",
        labels={"probability": t("probability"), "class": t("cover_type")},
    )
    figure.update_layout(showlegend=False, height=320, margin={"l": 10, "r": 10, "t": 30, "b": 10})
    figure.update_traces(marker_line_width=[3 if i == chosen else 0 for i in contract.CLASS_IDS])
    figure.update_xaxes(tickformat=".0%")
    return figure


def contribution_chart(reasons: Sequence[tuple[str, str, float]], chosen: int) -> go.Figure:
    """Signed horizontal bars, one per feature (label with its value), strongest on top; the
    hover text is the reason in words."""
    shown = list(reversed(reasons))  # Plotly draws the first bar at the bottom
    figure = go.Figure(
        go.Bar(
            x=[amount for _, _, amount in shown],
            y=[label for label, _, _ in shown],
            orientation="h",
            marker_color=["#2e7d32" if amount >= 0 else "#c62828" for _, _, amount in shown],
            text=[number(amount, 2, signed=True) for _, _, amount in shown],
            textposition="outside",
            cliponaxis=False,
            hovertext=[sentence for _, sentence, _ in shown],
            hoverinfo="text",
        )
    )
    amounts = [amount for _, _, amount in shown]
    low, high = min(0.0, *amounts), max(0.0, *amounts)
    room = 0.2 * (high - low or 1.0)  # for the values written outside the bars
    figure.update_layout(
        height=60 + 28 * len(shown),
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        xaxis_title=t("push_axis", name=class_label(chosen)),
        xaxis_range=[low - room, high + room],
    )
    return figure


def confusion_chart(matrix: Sequence[Sequence[float]]) -> go.Figure:
    names = class_names()[: len(matrix)]
    figure = px.imshow(
        [list(row) for row in matrix],
        x=names,
        y=names,
        text_auto=True,
        color_continuous_scale="Greens",
        labels={"x": t("predicted_class"), "y": t("true_class"), "color": t("rows")},
        aspect="auto",
    )
    figure.update_layout(height=460, margin={"l": 10, "r": 10, "t": 30, "b": 10})
    return figure
