"""The Monitoring page reads the monitor's stored reports: drift and live accuracy over time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from ui_harness import open_page

from forestops import contract
from forestops.config import get_settings
from forestops.store.database import get_engine, upgrade
from forestops.store.monitoring import save_report
from forestops.ui.i18n import TEXT


def _report(hours_ago: int, elevation: float, alert: bool) -> dict[str, object]:
    created = datetime.now(UTC) - timedelta(hours=hours_ago)
    drift = {name: 0.01 for name in contract.FEATURE_NAMES} | {"elevation": elevation}
    return {
        "created_at": created,
        "window_start": created - timedelta(hours=1),
        "window_end": created,
        "model_version": "1",
        "rows": {"reference": 3000, "served": 500, "ingested": 400},
        "feature_drift": {"served": drift, "ingested": drift},
        "prediction_shift": 0.05,
        "live_accuracy": 0.81 if not alert else 0.62,
        "reference_accuracy": 0.8,
        "alert": alert,
        "reasons": ["elevation drifted in served data (PSI 1.50 > 0.2)"] if alert else [],
    }


def _seed(reports: list[dict[str, object]]) -> None:
    url = get_settings().database_url
    upgrade(url)
    for report in reports:
        save_report(get_engine(url), report)


def test_drift_and_accuracy_over_time_and_the_latest_alert(offline_env: Path) -> None:
    _seed([_report(2, 0.02, False), _report(1, 1.5, True)])
    app = open_page("monitoring")
    assert "elevation drifted" in app.error[0].value
    charts = {e.proto.id.rsplit("-", 1)[-1] for e in app.get("plotly_chart")}
    assert charts == {"drift_over_time", "accuracy_over_time"}
    assert [m.value for m in app.metric][:2] == ["0.620", "0.800"]
    app.segmented_control(key="drift_source").set_value("ingested").run()
    assert not app.exception


def test_no_report_yet_is_explained_in_both_languages(offline_env: Path) -> None:
    _seed([])
    assert "No monitoring report yet" in open_page("monitoring").info[0].value
    spanish = open_page("monitoring", language="es")
    assert spanish.title[0].value == TEXT["monitoring_title"]["es"]
    assert "Todavía no hay informes" in spanish.info[0].value


def _reliance(elevation_shift: float) -> dict[str, object]:
    """Training relies on every feature alike; served traffic moves `elevation_shift` of the
    shares onto elevation, away from aspect."""
    share = 1 / len(contract.FEATURE_NAMES)
    shifts = {"elevation": elevation_shift, "aspect": -elevation_shift}
    features = {
        name: {
            "training": 2 * share,
            "served": share + shifts.get(name, 0.0),
            "shift": shifts.get(name, 0.0),
        }
        for name in contract.FEATURE_NAMES
    }
    return {"rows": 500, "features": features, "total_shift": elevation_shift, "note": None}


def test_what_the_champion_relies_on_training_vs_served_in_both_languages(
    offline_env: Path,
) -> None:
    _seed([_report(2, 0.02, False), {**_report(1, 0.02, False), "reliance": _reliance(0.25)}])
    app = open_page("monitoring")
    charts = {e.proto.id.rsplit("-", 1)[-1] for e in app.get("plotly_chart")}
    assert "reliance_chart" in charts
    assert app.subheader[0].value == TEXT["reliance_title"]["en"]
    assert any("Total shift 0.250:" in caption.value for caption in app.caption)
    table = app.dataframe[0].value.set_index("Feature")
    assert table.loc["Elevation (m)", "Shift of share"] == 0.25
    assert table.loc["Elevation (m)", "Served"] == pytest.approx(1 / 12 + 0.25)
    assert table.loc["Elevation (m)", "Training"] == pytest.approx(1 / 12)  # shares, not raw values
    spanish = open_page("monitoring", language="es")
    assert spanish.subheader[0].value == TEXT["reliance_title"]["es"]
    assert any("Cambio total 0,250:" in caption.value for caption in spanish.caption)


def test_a_report_without_the_comparison_says_why(offline_env: Path) -> None:
    skipped = {"rows": 0, "features": {}, "total_shift": None, "note": "no global explanation"}
    _seed([{**_report(1, 0.02, False), "reliance": skipped}])
    app = open_page("monitoring")
    assert any(
        "Not compared in the latest report: no global explanation" in i.value for i in app.info
    )
    assert "reliance_chart" not in {e.proto.id.rsplit("-", 1)[-1] for e in app.get("plotly_chart")}
