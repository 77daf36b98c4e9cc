"""Ask the inference service to serve the current champion now: POST /reload to every replica.

Where: INFERENCE_RELOAD_URLS (default INFERENCE_API_URL). Behind a load balancer one POST would
reach one replica, so a host name that resolves to several addresses (a compose service scaled
with `--scale inference=N`: Docker's DNS answers one address per replica) is asked once per
address. Each replica also polls the registry (MODEL_POLL_INTERVAL_S), so a replica missed here
catches up by itself; the fan-out only makes the promotion visible everywhere now.

Best effort where the service is merely absent: it polls the registry by itself
(MODEL_POLL_INTERVAL_S) and loads the champion when it starts, so a service that is down,
starting, or cut off from the tracking server is a warning for the caller, never a failed
training. A service that answers and refuses (a wrong admin key, a champion it cannot load) is
an error: nobody would notice it otherwise.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

from forestops.config import Settings

log = logging.getLogger(__name__)

# Answers that mean "not now", each fixed by the service's own poll (see serving.routes.reload):
# no champion registered yet, the tracking server unreachable from the service, still starting.
_LATER = {404: "no champion yet", 502: "tracking server unreachable", 503: "unavailable"}


class ReloadRefused(RuntimeError):
    """The inference service answered /reload with an error that will not fix itself."""


@dataclass(frozen=True)
class ReloadOutcome:
    reached: bool  # the service answered
    reloaded: bool  # it swapped to a new model (False: it already served the champion, or later)
    model_version: str | None
    detail: str

    def summary(self) -> str:
        if not self.reached or not self.model_version:
            return f"inference not reloaded: {self.detail}"
        state = "now serves" if self.reloaded else "already served"
        return f"inference {state} model version {self.model_version}"


def reload_replicas(settings: Settings, timeout_s: float = 120.0) -> list[ReloadOutcome]:
    """`request_reload` on every replica; a refusal by any of them is raised after all were asked."""
    outcomes: list[ReloadOutcome] = []
    refusals: list[str] = []
    for base_url in replica_urls(settings):
        try:
            outcomes.append(request_reload(settings, timeout_s, base_url=base_url))
        except ReloadRefused as refused:
            refusals.append(str(refused))
    if refusals:
        raise ReloadRefused("; ".join(refusals))
    return outcomes


def replica_urls(settings: Settings) -> list[str]:
    """One base URL per replica: each configured URL, or one per IPv4 address of its host name."""
    urls: list[str] = []
    for url in settings.inference_reload_urls or (settings.inference_api_url,):
        parts = urlsplit(url)
        addresses = _ipv4_addresses(parts.hostname or "", parts.port or 80)
        if len(addresses) <= 1:
            urls.append(url)
            continue
        urls += [urlunsplit(parts._replace(netloc=f"{ip}:{parts.port or 80}")) for ip in addresses]
    return urls


def _ipv4_addresses(host: str, port: int) -> list[str]:
    try:
        found = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        return []  # unresolvable now: the POST below says so
    return sorted({str(info[4][0]) for info in found})


def request_reload(
    settings: Settings, timeout_s: float = 120.0, *, base_url: str | None = None
) -> ReloadOutcome:
    """POST /reload with ADMIN_API_KEY; the model load and smoke test happen inside the call."""
    url = f"{(base_url or settings.inference_api_url).rstrip('/')}/reload"
    admin = settings.admin_api_key
    headers = {"X-API-Key": admin.get_secret_value()} if admin else {}
    try:
        response = httpx.post(url, headers=headers, timeout=timeout_s)
    except httpx.TransportError as error:
        detail = f"{url} unreachable ({type(error).__name__}: {error}); it loads the champion at its next poll or start"
        log.warning(detail)
        return ReloadOutcome(False, False, None, detail)
    body = _json(response)
    detail = str(body.get("detail") or response.reason_phrase)
    if response.status_code in _LATER:
        detail = f"{url}: {response.status_code} {_LATER[response.status_code]} ({detail})"
        log.warning(detail)
        return ReloadOutcome(True, False, None, detail)
    if response.is_error:
        raise ReloadRefused(f"{url}: {response.status_code} {detail}")
    outcome = ReloadOutcome(
        True, bool(body.get("reloaded")), _text(body.get("model_version")), detail
    )
    log.info(outcome.summary())
    return outcome


def _json(response: httpx.Response) -> dict[str, object]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _text(value: object) -> str | None:
    return None if value is None else str(value)
