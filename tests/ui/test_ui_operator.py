"""The Model page's operator gate as the page script runs it (Streamlit's AppTest): without
OPERATIONS_API_URL there is nothing to act with; with it, only a sign-in form until the
operations API accepts the key, and a refusal is a sentence naming why. The browser test
(test_ui_browser.py) signs in for real and promotes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from streamlit.testing.v1 import AppTest
from ui_harness import UiStack, open_page

from forestops.operations.app import create_app
from forestops.webserver import BackgroundServer, free_port

ACTION_LABELS = {"Promote", "Roll back", "Train now", "Promover", "Revertir", "Entrenar ahora"}


def _buttons(app: AppTest) -> set[str]:
    return {button.label for button in app.button}


def _sign_in(app: AppTest, name: str, key: str) -> AppTest:
    inputs = {widget.label: widget for widget in app.text_input}
    inputs["Your name (kept in the audit trail)"].input(name)
    inputs["Admin key"].input(key)
    next(b for b in app.button if b.label == "Sign in as operator").click()
    return app.run()


def test_without_an_operations_api_the_page_offers_no_actions(ui_env: UiStack) -> None:
    app = open_page("model")
    assert "Act on the champion" not in [h.value for h in app.subheader]
    assert not _buttons(app) & (ACTION_LABELS | {"Sign in as operator"})


def test_an_unreachable_operations_api_is_a_sentence_and_no_buttons(
    ui_env: UiStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPERATIONS_API_URL", f"http://127.0.0.1:{free_port()}")
    app = open_page("model")
    assert "Act on the champion" in [h.value for h in app.subheader]
    assert "Sign in as operator" in _buttons(app) and not _buttons(app) & ACTION_LABELS

    app = _sign_in(app, "erin", "any-key")

    assert any("The operations API does not answer" in e.value for e in app.error)
    assert not _buttons(app) & ACTION_LABELS
    spanish = open_page("model", language="es")
    assert "Entrar como operador" in _buttons(spanish)


@pytest.fixture
def disabled_operations(ui_env: UiStack) -> Iterator[str]:
    """An operations API over the test stack without ADMIN_API_KEY: actions disabled."""
    with BackgroundServer(create_app(ui_env.settings)) as api:
        yield api.url


def test_an_operations_api_without_admin_key_says_which_setting(
    ui_env: UiStack, disabled_operations: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPERATIONS_API_URL", disabled_operations)
    app = _sign_in(open_page("model"), "erin", "any-key")

    [error] = [e.value for e in app.error]
    assert "Operator actions are disabled" in error and "ADMIN_API_KEY" in error
    assert not _buttons(app) & ACTION_LABELS
