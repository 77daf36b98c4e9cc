"""The UI as a person sees it: `forestops ui` as a real subprocess, Debian's chromium driven by
Playwright, every page opened, no error box anywhere, one real prediction, a screenshot per page
under test-output/screenshots/ (look at them: they are the UI's showcase).

Chromium comes from Debian (`apt-get install -y chromium`), never from `playwright install`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, sync_playwright
from ui_harness import UI_ENV_PREFIXES, UiStack

from forestops.webserver import free_port

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
PAGES = (  # url path, heading the page must show, charts it must draw
    ("", "forestops", 0),
    ("predict", "Predict the cover type", 0),
    ("analytics", "Analytics of the ingested data", 6),
    ("model", "The model", 1),
    ("status", "Settings and status", 0),
)


@pytest.fixture
def ui_url(ui_stack: UiStack, tmp_path: Path) -> Iterator[str]:
    """`forestops ui --port <free>` pointed at the test stack; its log is kept for failures."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(UI_ENV_PREFIXES)}
    log = (tmp_path / "ui.log").open("wb")
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("forestops")), "ui", "--port", str(port)],
        env={**env, **ui_stack.env()},
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, (tmp_path / "ui.log").read_text()
            try:
                if httpx.get(f"{url}/_stcore/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "ui.log").read_text()
            time.sleep(0.3)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
        log.close()


def _settle(page: Page, heading: str, charts: int) -> None:
    """Wait until the script run is over: the heading is drawn, the charts are, nothing runs."""
    page.get_by_role("heading", name=heading).first.wait_for(timeout=60_000)
    if charts:
        page.wait_for_function(
            f"document.querySelectorAll('.js-plotly-plot').length >= {charts}", timeout=60_000
        )
    page.wait_for_function(
        '!document.querySelector(\'[data-testid="stStatusWidgetRunningIcon"], '
        '[data-testid="stSpinner"]\')',
        timeout=60_000,
    )
    page.wait_for_timeout(500)  # let Plotly finish its transitions before the screenshot


def _screenshot(page: Page, name: str) -> None:
    """The whole page: Streamlit scrolls inside its main section, so grow the viewport to it."""
    height = page.evaluate(
        'Math.max(...[...document.querySelectorAll(\'[data-testid="stMain"], '
        '[data-testid="stAppViewContainer"]\')].map(e => e.scrollHeight), 1000)'
    )
    page.set_viewport_size({"width": 1440, "height": int(height) + 40})
    page.wait_for_timeout(800)  # charts re-layout to the new size
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)
    page.set_viewport_size({"width": 1440, "height": 1000})


def _assert_no_error(page: Page, where: str) -> None:
    errors = page.locator('[data-testid="stException"], [data-testid="stAlertContentError"]')
    assert errors.count() == 0, (where, errors.all_inner_texts())


def test_every_page_in_a_real_browser(ui_url: str) -> None:
    assert CHROMIUM.exists(), (
        f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium); "
        "the browser test never downloads a browser"
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            for path, heading, charts in PAGES:
                page.goto(f"{ui_url}/{path}")
                _settle(page, heading, charts)
                _assert_no_error(page, path or "home")
                _screenshot(page, path or "home")

            page.goto(f"{ui_url}/predict")
            _settle(page, "Predict the cover type", 0)
            page.get_by_role("button", name="Predict", exact=True).click()
            answer = page.get_by_text("Predicted cover type:")
            answer.wait_for(timeout=60_000)
            _settle(page, "Predict the cover type", 2)  # the probabilities and the why
            page.get_by_role("heading", name="Why ").first.wait_for(timeout=60_000)
            assert page.get_by_text(" → ").count() >= 3  # the three strongest reasons
            _assert_no_error(page, "prediction")
            _screenshot(page, "predict-answer")

            page.goto(f"{ui_url}/predict?lang=es")
            _settle(page, "Predecir el tipo de cubierta", 0)
            page.get_by_role("button", name="Predecir", exact=True).click()
            page.get_by_role("heading", name="¿Por qué ").first.wait_for(timeout=60_000)
            _settle(page, "Predecir el tipo de cubierta", 2)
            spanish = page.get_by_text(" → a favor de ").count()
            assert spanish + page.get_by_text(" → en contra de ").count() >= 3
            _assert_no_error(page, "prediction in Spanish")
            _screenshot(page, "predict-answer-es")

            page.goto(f"{ui_url}/analytics?lang=es")  # a shareable Spanish link
            _settle(page, "Analítica de los datos", 6)
            _assert_no_error(page, "analytics in Spanish")
            _screenshot(page, "analytics-es")
        finally:
            browser.close()
