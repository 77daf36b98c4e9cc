"""The Streamlit entry point (`forestops ui` runs `streamlit run` on this file).

It only frames the pages: page config, navigation with titles in the reader's language, the
language switch, and the last-resort guard that turns any failure of a page into a sentence.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from forestops.redact import install_log_redaction
from forestops.ui.i18n import language_selector, t
from forestops.ui.section_guard import guard

VIEWS = Path(__file__).with_name("views")
PAGES = (
    ("home", "nav_home", ":material/home:"),
    ("predict", "nav_predict", ":material/psychology:"),
    ("analytics", "nav_analytics", ":material/insights:"),
    ("model", "nav_model", ":material/model_training:"),
    ("monitoring", "nav_monitoring", ":material/monitor_heart:"),
    ("status", "nav_status", ":material/settings:"),
)


def main() -> None:
    install_log_redaction()  # the pages log failures; no URI's secret goes with them
    st.set_page_config(page_title="forestops", page_icon=":material/forest:", layout="wide")
    pages = [
        st.Page(VIEWS / f"{name}.py", title=t(title), icon=icon, default=name == "home")
        for name, title, icon in PAGES
    ]
    page = st.navigation(pages)
    with st.sidebar:
        st.caption(t("tagline"))
        if page.url_path != "status":  # the status page has the switch in its body
            language_selector(st.sidebar, key="language_sidebar")
    with guard("page"):
        page.run()


if __name__ == "__main__":
    main()
