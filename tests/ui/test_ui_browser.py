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
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from mlflow.tracking import MlflowClient
from playwright.sync_api import Page, sync_playwright
from pydantic import SecretStr
from ui_harness import UI_ENV_PREFIXES, UiStack

from forestops.operations.app import create_app as operations_app
from forestops.store.audit import recent_actions
from forestops.store.database import get_engine
from forestops.webserver import BackgroundServer, free_port

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


@contextmanager
def running_ui(env: dict[str, str], workdir: Path) -> Iterator[str]:
    """`forestops ui --port <free>` with `env` (nothing of the shell's forestops settings); its
    log is kept in `workdir` for failures."""
    port = free_port()
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(UI_ENV_PREFIXES)}
    log = (workdir / "ui.log").open("wb")
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("forestops")), "ui", "--port", str(port)],
        env={**inherited, **env},
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, (workdir / "ui.log").read_text()
            try:
                if httpx.get(f"{url}/_stcore/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (workdir / "ui.log").read_text()
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


@pytest.fixture
def ui_url(ui_stack: UiStack, tmp_path: Path) -> Iterator[str]:
    """The UI pointed at the test stack."""
    with running_ui(ui_stack.env(), tmp_path) as url:
        yield url


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


OPERATOR_KEY = "the-operators-key-for-the-browser-test"
ACTIONS = ("Promote", "Roll back", "Train now")


@pytest.fixture
def operations(ui_stack: UiStack) -> Iterator[tuple[str, str]]:
    """An operations API over the test stack's stores, for a model of this test's own (the
    stack's champion registered twice, v2 the champion), so no other UI test sees its actions;
    yields (its URL, the model name)."""
    client = MlflowClient(ui_stack.settings.mlflow_tracking_uri)
    served = client.get_model_version_by_alias(ui_stack.settings.model_name, "champion")
    name = f"operator-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    model_id = served.source.removeprefix("models:/")  # the logged model the version is
    files = client.get_logged_model(model_id).artifact_location
    for _ in range(2):
        version = client.create_model_version(name, files, run_id=served.run_id, model_id=model_id)
    client.set_registered_model_alias(name, "champion", version.version)
    settings = ui_stack.settings.model_copy(
        update={
            "model_name": name,
            "admin_api_key": SecretStr(OPERATOR_KEY),
            "inference_api_url": f"http://127.0.0.1:{free_port()}",  # the stack's keeps its model
        }
    )
    with BackgroundServer(operations_app(settings)) as api:
        yield api.url, name


def _action_buttons(page: Page) -> int:
    return sum(page.get_by_role("button", name=label, exact=True).count() for label in ACTIONS)


def test_only_a_signed_in_operator_gets_the_actions_and_a_promotion_works(
    ui_stack: UiStack, operations: tuple[str, str], tmp_path: Path
) -> None:
    api_url, name = operations
    # the UI gets the API's address, never the admin key (UI_ENV_PREFIXES keeps the shell's out)
    env = {**ui_stack.env(), "MODEL_NAME": name, "OPERATIONS_API_URL": api_url}
    assert "ADMIN_API_KEY" not in env
    client = MlflowClient(ui_stack.settings.mlflow_tracking_uri)
    with running_ui(env, tmp_path) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.goto(f"{url}/model")
            _settle(page, "The model", 1)
            page.get_by_role("heading", name="Act on the champion").wait_for(timeout=60_000)
            sign_in = page.get_by_role("button", name="Sign in as operator")
            assert sign_in.count() == 1 and _action_buttons(page) == 0

            page.get_by_label("Your name (kept in the audit trail)").fill("dana")
            page.get_by_label("Admin key").fill("a-guess")
            sign_in.click()
            page.get_by_text("The operations API refused this key").wait_for(timeout=60_000)
            assert _action_buttons(page) == 0

            page.get_by_label("Admin key").fill(OPERATOR_KEY)
            sign_in.click()
            page.get_by_role("button", name="Promote", exact=True).wait_for(timeout=60_000)
            _settle(page, "The model", 1)
            assert _action_buttons(page) == len(ACTIONS)
            assert page.get_by_text("Signed in as operator dana").count() == 1

            page.get_by_label("Reason").first.fill("v2 misroutes aspen")  # promote's: v1 chosen
            page.get_by_role("button", name="Promote", exact=True).click()
            page.get_by_text("Done: ").wait_for(timeout=120_000)
            _settle(page, "The model", 1)
            _assert_no_error(page, "model after a promotion")
            _screenshot(page, "model-operator")

            assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
            [row] = recent_actions(get_engine(ui_stack.settings.database_url), name)
            assert (row["action"], row["to_version"], row["actor"], row["reason"]) == (
                "promote",
                "1",
                "dana",
                "v2 misroutes aspen",
            )

            page.get_by_role("button", name="Sign out").click()
            page.get_by_role("button", name="Sign in as operator").wait_for(timeout=60_000)
            assert _action_buttons(page) == 0
        finally:
            browser.close()
