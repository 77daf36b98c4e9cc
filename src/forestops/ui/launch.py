"""How `forestops ui` starts Streamlit: the packaged entry app with production flags.

Headless (no browser is opened on a server), no usage statistics sent anywhere, no file
watcher (the installed app does not change under it), and no exception details in the browser:
pages already turn errors into sentences, and anything that slips through goes to the log only.
"""

from __future__ import annotations

import sys
from pathlib import Path

APP = Path(__file__).with_name("app.py")


def streamlit_command(port: int, host: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.headless=true",
        "--browser.gatherUsageStats=false",
        f"--server.port={port}",
        f"--server.address={host}",
        "--server.fileWatcherType=none",
        "--client.showErrorDetails=none",
        "--client.toolbarMode=viewer",
        "--theme.primaryColor=#2e7d32",
    ]
