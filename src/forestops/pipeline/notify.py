"""Messages to people: a Slack-compatible webhook (`NOTIFY_WEBHOOK_URL`, body `{"text": ...}`).

A notification is a side effect of a job, never its outcome: a webhook that is down, slow or
misconfigured is logged and the job carries on (short timeout, no retries: the next event will
say more). Unset URL: nothing is sent.
"""

from __future__ import annotations

import logging

import httpx

from forestops.config import Settings
from forestops.redact import redact_text

log = logging.getLogger(__name__)


def notify(settings: Settings, text: str) -> bool:
    """Post `text`, every URI in it redacted (an error quoting a database URL quotes its
    password); True when the webhook answered 2xx."""
    url = settings.notify_webhook_url
    if not url:
        return False
    try:
        response = httpx.post(
            url, json={"text": f"forestops: {redact_text(text)}"}, timeout=settings.notify_timeout_s
        )
        response.raise_for_status()
    except httpx.HTTPError as error:
        log.warning("notification not delivered to the webhook: %s", error)
        return False
    return True
