"""Predict: one record from a form, an editable table, or a CSV file, all through the inference API.

The form and the table are generated from the data contract (bounds, defaults, category names),
so they accept exactly what the API accepts. Answers are kept in the session, so they survive the
reruns that every later click causes.
"""

from __future__ import annotations

import hashlib
import io
from functools import partial
from typing import Any

import pandas as pd
import streamlit as st

from forestops import contract
from forestops.config import Settings, get_settings
from forestops.redact import redact_uri
from forestops.ui.charts import contribution_chart, probability_chart, with_class_names
from forestops.ui.csv_input import EXAMPLE_CSV, CsvCheck, check_csv, to_csv_bytes
from forestops.ui.explain import reasons, top_reasons
from forestops.ui.i18n import (
    category_label,
    class_label,
    feature_help,
    feature_label,
    number,
    percent,
    t,
)
from forestops.ui.inference import explained, predict, predict_csv, recent_health
from forestops.ui.section_guard import guard

REASONS = 3  # per row in the table and CSV results

DEFAULT_RECORD: dict[str, Any] = {
    **{feature.name: feature.default for feature in contract.NUMERIC_FEATURES},
    "wilderness_area": "Rawah",
    "soil_type": "C7745",
}
EXAMPLE_RECORDS: tuple[dict[str, Any], ...] = (
    dict(zip(contract.FEATURE_NAMES, EXAMPLE_CSV.splitlines()[1].split(","), strict=True)),
    DEFAULT_RECORD,
    {
        **DEFAULT_RECORD,
        "elevation": 3350,
        "slope": 18,
        "horizontal_distance_to_roadways": 1200,
        "wilderness_area": "Commanche",
        "soil_type": "C8772",
    },
)


def _answer(
    prediction: dict[str, Any],
    model_version: object,
    record: dict[str, Any],
    why_not: str | None,
) -> None:
    chosen = int(prediction["cover_type"])
    probabilities = prediction["probabilities"]
    st.success(t("predicted_as", name=class_label(chosen), id=chosen), icon=":material/forest:")
    confidence, version = st.columns(2)
    confidence.metric(t("confidence"), percent(probabilities[chosen]))
    version.metric(t("model_version"), str(model_version or "—"))
    answer, why = st.columns(2)
    with answer:
        st.plotly_chart(probability_chart(probabilities, chosen), key="single_probabilities")
    with why:
        _why(prediction.get("explanation"), record, why_not)


def _why(explanation: dict[str, Any] | None, record: dict[str, Any], why_not: str | None) -> None:
    """The explanation beside the answer: the strongest reasons in words, then every feature's
    push as a signed bar."""
    if explanation is None:
        st.info(t("why_unavailable", reason=why_not or "—"), icon=":material/help:")
        return
    name = class_label(int(explanation["cover_type"]))
    st.subheader(t("why_title", name=name))
    ranked = reasons(explanation, record)
    st.markdown("\n".join(f"- {sentence}" for _, sentence, _ in ranked[:REASONS]))
    st.plotly_chart(
        contribution_chart(ranked, int(explanation["cover_type"])), key="single_explanation"
    )
    st.caption(t("why_caption", name=name, base=number(explanation["base_value"], 2)))


def _single(settings: Settings) -> None:
    with st.form("single_record"):
        st.markdown(t("single_help"))
        record: dict[str, Any] = {}
        columns = st.columns(2)
        for position, feature in enumerate(contract.NUMERIC_FEATURES):
            record[feature.name] = columns[position % 2].number_input(
                feature_label(feature.name),
                min_value=feature.minimum,
                max_value=feature.maximum,
                value=feature.default,
                step=1,
                help=feature_help(feature.name),
                key=f"single_{feature.name}",
            )
        for name, categories in contract.CATEGORICAL_FEATURES.items():
            codes = [category.code for category in categories]
            record[name] = st.selectbox(
                feature_label(name),
                codes,
                index=codes.index(DEFAULT_RECORD[name]),
                format_func=partial(category_label, name),
                help=feature_help(name),
                key=f"single_{name}",
            )
        submitted = st.form_submit_button(t("predict_button"), type="primary", key="single_predict")
    if submitted:
        st.session_state.pop("single_answer", None)
        with guard("api"):
            body, why_not = explained(partial(predict, settings, [record]))
            prediction = body["predictions"][0]
            st.session_state["single_answer"] = (
                prediction,
                body.get("model_version"),
                record,
                why_not,
            )
    if "single_answer" in st.session_state:
        _answer(*st.session_state["single_answer"])


def _predicted_frame(inputs: pd.DataFrame, predictions: list[dict[str, Any]]) -> pd.DataFrame:
    labels = [int(p["cover_type"]) for p in predictions]
    confidence = [max(p["probabilities"]) for p in predictions]
    result = inputs.reset_index(drop=True).assign(cover_type=labels, confidence=confidence)
    explanations = [p.get("explanation") for p in predictions]
    result = _with_reasons(result, explanations)
    return with_class_names(result).rename(columns={"class": t("cover_type")})


def _with_reasons(frame: pd.DataFrame, explanations: list[dict[str, Any] | None]) -> pd.DataFrame:
    """`frame` plus the top reasons of each row's explanation (none: `frame` unchanged)."""
    if not explanations or any(e is None for e in explanations):
        return frame
    records = frame.to_dict("records")
    rows = [
        top_reasons(explanation, record, REASONS)
        for explanation, record in zip(explanations, records, strict=True)
        if explanation is not None
    ]
    columns = {t("reason_column", n=n + 1): [row[n] for row in rows] for n in range(REASONS)}
    return frame.assign(**columns)


def _editor_config() -> dict[str, Any]:
    config: dict[str, Any] = {
        feature.name: st.column_config.NumberColumn(
            feature_label(feature.name),
            help=feature_help(feature.name),
            min_value=feature.minimum,
            max_value=feature.maximum,
            step=1,
            format="%d",
            required=True,
        )
        for feature in contract.NUMERIC_FEATURES
    }
    for name, categories in contract.CATEGORICAL_FEATURES.items():
        config[name] = st.column_config.SelectboxColumn(
            feature_label(name),
            help=feature_help(name),
            options=[category.code for category in categories],
            required=True,
        )
    return config


def _batch(settings: Settings) -> None:
    st.markdown(t("batch_help"))
    initial = pd.DataFrame(list(EXAMPLE_RECORDS), columns=list(contract.FEATURE_NAMES))
    initial = initial.astype({name: "int64" for name in contract.NUMERIC_NAMES})
    edited = st.data_editor(
        initial,
        num_rows="dynamic",
        hide_index=True,
        column_config=_editor_config(),
        key="batch_editor",
    )
    if st.button(t("predict_table"), type="primary", key="batch_predict"):
        st.session_state.pop("batch_answer", None)
        rows = edited.dropna(how="all").reset_index(drop=True)
        incomplete = [
            t("row_missing", row=index + 1, columns=", ".join(row.index[row.isna()]))
            for index, row in rows.iterrows()
            if row.isna().any()
        ]
        if rows.empty:
            st.warning(t("table_empty"))
        elif incomplete:
            st.error(t("table_incomplete") + "\n\n" + "\n".join(f"- {line}" for line in incomplete))
        else:
            records = [
                {**row, **{name: int(row[name]) for name in contract.NUMERIC_NAMES}}
                for row in rows.to_dict("records")
            ]
            with guard("api"):
                body, _ = explained(partial(predict, settings, records))
                st.session_state["batch_answer"] = _predicted_frame(rows, body["predictions"])
    if "batch_answer" in st.session_state:
        st.dataframe(st.session_state["batch_answer"], hide_index=True, key="batch_result")


def _csv_problem(check: CsvCheck) -> None:
    if check.problem in ("not_text", "unreadable", "empty"):
        st.error(t(f"csv_{check.problem}", error=check.error), icon=":material/scan_delete:")
        return
    if check.problem == "no_features":
        st.error(t("csv_no_features", expected=", ".join(contract.FEATURE_NAMES)))
        return
    lines = []
    if check.missing:
        lines.append(t("csv_missing", columns=", ".join(check.missing)))
    if check.unknown:
        lines.append(t("csv_unknown", columns=", ".join(check.unknown)))
    if check.repeated:
        lines.append(t("csv_repeated", columns=", ".join(check.repeated)))
    st.error(
        t("csv_columns") + "\n\n" + "\n".join(f"- {line}" for line in lines),
        icon=":material/view_column:",
    )


def _csv_explanations(frame: pd.DataFrame) -> list[dict[str, Any] | None]:
    """The explanation of each row of the service's CSV answer (`?explain=true` columns)."""
    if "base_value" not in frame.columns:
        return []
    columns = [f"contribution_{name}" for name in contract.FEATURE_NAMES]
    return [
        {
            "cover_type": int(label),
            "base_value": float(base),
            "contributions": dict(zip(contract.FEATURE_NAMES, map(float, cells), strict=True)),
        }
        for label, base, cells in zip(
            frame["cover_type_pred"],
            frame["base_value"],
            frame[columns].itertuples(index=False),
            strict=True,
        )
    ]


def _csv_result(result: bytes, labels: pd.Series | None, file_name: str) -> None:
    frame = pd.read_csv(io.BytesIO(result))
    explanations = _csv_explanations(frame)
    if explanations:
        frame = _with_reasons(frame, explanations)
        result = frame.to_csv(index=False).encode("utf-8")  # the download carries the reasons
    numbers = [c for c in frame.columns if c == "base_value" or c.startswith("contribution_")]
    shown = with_class_names(
        frame.drop(columns=["cover_type_name", *numbers], errors="ignore"), "cover_type_pred"
    )
    shown = shown.rename(columns={"class": t("cover_type")})
    if labels is not None:
        truth = pd.to_numeric(labels.reset_index(drop=True), errors="coerce")
        accuracy = float((truth == frame["cover_type_pred"]).mean())
        st.metric(t("accuracy_against_labels"), percent(accuracy))
    counts = shown[t("cover_type")].value_counts()
    st.markdown(
        t("csv_predicted", rows=len(frame))
        + " "
        + ", ".join(f"{name}: {count}" for name, count in counts.items())
    )
    st.dataframe(shown, hide_index=True, key="csv_result_table")
    st.download_button(
        t("download_predictions"),
        result,
        file_name=f"{file_name.rsplit('.', 1)[0]}_predictions.csv",
        mime="text/csv",
        on_click="ignore",
        icon=":material/download:",
    )


def _csv(settings: Settings) -> None:
    st.markdown(t("csv_help", columns=", ".join(contract.FEATURE_NAMES)))
    st.download_button(
        t("example_csv"),
        EXAMPLE_CSV,
        file_name="forestops_example.csv",
        mime="text/csv",
        on_click="ignore",
        key="example_csv",
    )
    upload = st.file_uploader(t("csv_label"), type=["csv", "txt"], key="csv_file")
    if upload is None:
        return
    raw = upload.getvalue()
    check = check_csv(raw)
    if not check.ok or check.features is None:
        _csv_problem(check)
        return
    st.caption(t("csv_ok", rows=len(check.features)))
    digest = hashlib.sha256(raw).hexdigest()
    answer = st.session_state.get("csv_answer")
    if answer is None or answer[0] != digest:
        st.session_state.pop("csv_answer", None)
        with guard("api"), st.spinner(t("predicting")):
            result, _ = explained(
                partial(predict_csv, settings, to_csv_bytes(check.features), upload.name)
            )
            st.session_state["csv_answer"] = (digest, result)
    if "csv_answer" in st.session_state:
        _csv_result(st.session_state["csv_answer"][1], check.labels, upload.name)


def render() -> None:
    settings = get_settings()
    st.title(t("predict_title"))
    health = recent_health(settings)
    if not health.reachable:
        st.warning(
            t("predict_api_down", url=redact_uri(settings.inference_api_url)),
            icon=":material/cloud_off:",
        )
    elif not health.model_loaded:
        st.warning(
            t("predict_no_model", detail=health.detail or ""), icon=":material/hourglass_empty:"
        )
    single, batch, upload = st.tabs([t("tab_single"), t("tab_batch"), t("tab_csv")])
    with single:
        _single(settings)
    with batch:
        _batch(settings)
    with upload:
        _csv(settings)


if __name__ == "__main__":
    render()
