"""The Model page's operator actions: sign in with the admin key, then promote, roll back, train.

Shown only when OPERATIONS_API_URL is set. Until someone signs in, the page stays read-only: the
sign-in form is all there is. Signing in checks the key against the operations API and keeps it
in this browser session only (never on disk, never in the UI's settings); each action sends it
again, so the API, not this page, is the gate. An action's answer is kept for the next run of the
page, which then shows the moved champion and the new audit row with it.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from forestops.config import Settings
from forestops.ui import inference, operations, registry
from forestops.ui.i18n import percent, t
from forestops.ui.operations import OperationsError

OPERATOR = "operator"  # session state: {"name": ..., "key": ...}
LAST_RESULT = "operator_result"  # session state: (ok, text), shown once


def render(settings: Settings) -> None:
    if not settings.operations_api_url:
        return
    st.subheader(t("operator_title"))
    signed_in = st.session_state.get(OPERATOR)
    if signed_in is None:
        _sign_in(settings)
    else:
        _actions(settings, signed_in["name"], signed_in["key"])


def _sign_in(settings: Settings) -> None:
    st.caption(t("operator_sign_in_caption"))
    with st.form("operator_sign_in"):
        name = st.text_input(t("operator_name"), max_chars=120)
        key = st.text_input(t("operator_key"), type="password")
        submitted = st.form_submit_button(t("operator_sign_in"), icon=":material/login:")
    if not submitted:
        return
    try:
        operations.verify_operator(settings, key)
    except OperationsError as error:
        _show_error(error)
        return
    st.session_state[OPERATOR] = {"name": name.strip() or "operator", "key": key}
    st.rerun()


def _actions(settings: Settings, name: str, key: str) -> None:
    status, sign_out = st.columns([4, 1])
    status.caption(t("operator_signed_in", name=name))
    if sign_out.button(t("operator_sign_out"), key="operator_sign_out"):
        del st.session_state[OPERATOR]
        st.rerun()
    result = st.session_state.pop(LAST_RESULT, None)
    if result is not None:
        ok, text = result
        (st.success if ok else st.error)(text)
    try:
        versions = operations.versions(settings, key)
        job = operations.training(settings, key)
    except OperationsError as error:
        _show_error(error)
        return
    promote, rollback, train = st.columns(3)
    with promote:
        _promote_form(settings, name, key, versions)
    with rollback:
        _rollback_form(settings, name, key)
    with train:
        _train_form(settings, name, key, job)


def _promote_form(settings: Settings, name: str, key: str, versions: list[dict[str, Any]]) -> None:
    st.markdown(f"**{t('promote_title')}**")
    candidates = [v for v in versions if settings.champion_alias not in v["aliases"]]
    if not candidates:
        st.info(t("no_other_version"))
        return
    with st.form("operator_promote", clear_on_submit=True):
        chosen = st.selectbox(
            t("model_version"), candidates, format_func=_version_label, key="promote_version"
        )
        reason = st.text_input(t("action_reason"), key="promote_reason")
        if st.form_submit_button(t("promote_button"), icon=":material/workspace_premium:"):
            _act(lambda: operations.promote(settings, key, chosen["version"], reason, name))


def _rollback_form(settings: Settings, name: str, key: str) -> None:
    st.markdown(f"**{t('rollback_title')}**")
    with st.form("operator_rollback", clear_on_submit=True):
        st.caption(t("rollback_caption"))
        reason = st.text_input(t("action_reason"), key="rollback_reason")
        if st.form_submit_button(t("rollback_button"), icon=":material/undo:"):
            _act(lambda: operations.rollback(settings, key, reason, name))


def _train_form(settings: Settings, name: str, key: str, job: dict[str, Any] | None) -> None:
    st.markdown(f"**{t('train_title')}**")
    if job is not None and job["state"] == "running":
        st.info(t("training_running", actor=job["actor"], started=job["started_at"]))
        st.button(t("refresh"), key="training_refresh")  # a rerun asks again
    elif job is not None:
        st.caption(
            t(
                "training_finished",
                actor=job["actor"],
                finished=job["finished_at"],
                state=job["state"],
                summary=job["summary"],
            )
        )
    with st.form("operator_train", clear_on_submit=True):
        st.caption(t("train_caption"))
        reason = st.text_input(t("action_reason"), key="train_reason")
        if st.form_submit_button(t("train_button"), icon=":material/model_training:"):
            _act(lambda: operations.train_now(settings, key, reason, name), started=True)


def _act(call: Any, started: bool = False) -> None:
    try:
        answer = call()
    except OperationsError as error:
        st.session_state[LAST_RESULT] = (False, _error_text(error))
    else:
        text = (
            t("training_started", actor=answer["actor"])
            if started
            else t(
                "action_done",
                detail="; ".join(p for p in (answer["detail"], answer["reload"]) if p),
            )
        )
        st.session_state[LAST_RESULT] = (True, text)
        _forget_cached_state()
    st.rerun()


def _forget_cached_state() -> None:
    """The champion just moved: the page's briefly cached reads of it must not show the old one."""
    for cached in (
        registry.champion,
        registry.version_history,
        inference.recent_health,
        inference.recent_metadata,
    ):
        cached.clear()


def _version_label(version: dict[str, Any]) -> str:
    accuracy = version.get("accuracy")
    parts = [f"v{version['version']}", percent(accuracy) if accuracy is not None else "—"]
    return " · ".join([*parts, version["created"][:16].replace("T", " ")])


def _error_text(error: OperationsError) -> str:
    return t(f"operator_{error.kind}", detail=error.detail)


def _show_error(error: OperationsError) -> None:
    st.error(_error_text(error), icon=":material/block:")
