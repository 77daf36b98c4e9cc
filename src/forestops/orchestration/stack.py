"""`forestops up`: the whole embedded platform in one process tree, stopped cleanly by Ctrl-C.

In this process: the built-in data API (unless SOURCE_API_BASE_URL points elsewhere), the
inference service (it polls for new champions by itself; we also POST /reload after a training
tick that changed the champion), the operations API on loopback (the UI's operator actions,
enabled by ADMIN_API_KEY) and the scheduler. As supervised children: each ingestion and
training tick, the MLflow UI and the web UI.

Stopping (SIGINT, SIGTERM or SIGHUP): no new ticks; the UIs get SIGTERM; a running job gets
`shutdown_grace_s` to finish (an ingestion commits its batch or nothing), then SIGTERM, then
SIGKILL; then the in-process servers drain. A second Ctrl-C skips the grace period.
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
import threading
from types import FrameType
from urllib.parse import urlparse

from forestops.config import Settings
from forestops.orchestration.scheduler import EmbeddedScheduler, JobRunner
from forestops.orchestration.services import Service
from forestops.webserver import BackgroundServer

log = logging.getLogger("forestops.up")

SERVICE_WATCH_S = 2.0
_DATABASE_SCHEMES = {"sqlite", "postgresql", "mysql", "mssql"}
_ANY_INTERFACE = {"0.0.0.0", "::", ""}


class StartupError(RuntimeError):
    """`forestops up` cannot start (a port in use...): the message says what to change."""


def check_ports_free(host: str, ports: dict[str, int]) -> None:
    """Fail before starting anything, naming the setting to change (macOS keeps 5000 for AirPlay)."""
    for setting, port in ports.items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError as error:
                raise StartupError(
                    f"port {port} on {host} is not available ({error.strerror}): "
                    f"stop what uses it or set {setting.upper()}"
                ) from error


def prepare_stores(settings: Settings) -> None:
    """Create or upgrade both databases once, here, before any child or server races to do it.

    A fresh MLflow database is initialised by whoever opens it first; the MLflow UI, the
    training child and the inference service would otherwise all try at the same moment.
    """
    from forestops.store.database import upgrade

    settings.ensure_home()
    upgrade(settings.database_url)
    if _is_database_uri(settings.mlflow_tracking_uri):
        from mlflow.tracking import MlflowClient

        MlflowClient(tracking_uri=settings.mlflow_tracking_uri).search_experiments(max_results=1)


def builtin_source_settings(settings: Settings) -> Settings:
    """The built-in data API's settings under `up`: a batch window of half the ingestion interval
    unless MIN_UPDATE_TIME_S is set.

    The API moves to the next batch on the first call after its window has passed. With a window
    equal to the interval (300 s both, the course's values), a tick that fetches a second
    earlier than the last one (child start-up time varies) gets the same batch again, so about
    half the ticks would bring only duplicates. Half the interval gives every tick the next
    batch, and never skips one: the API advances at most one batch per call.

    The ingestion children get the same settings: a harvest (INGEST_HARVEST) takes its time
    budget from the window, and skips the politeness pause between calls
    (HARVEST_MIN_INTERVAL_S, unless set) since the API is this process's own.
    """
    update: dict[str, float] = {}
    if "min_update_time_s" not in settings.model_fields_set:
        update["min_update_time_s"] = settings.ingest_interval_s / 2
    if "harvest_min_interval_s" not in settings.model_fields_set:
        update["harvest_min_interval_s"] = 0.0
    return settings.model_copy(update=update)


def _is_database_uri(uri: str) -> bool:
    return urlparse(uri).scheme.split("+")[0] in _DATABASE_SCHEMES


class EmbeddedStack:
    def __init__(self, settings: Settings, *, ui_available: bool) -> None:
        self.settings = settings
        host = settings.up_host
        self._client_host = "127.0.0.1" if host in _ANY_INTERFACE else host
        self.inference_url = self._url(settings.inference_port)
        self.operations_url = f"http://127.0.0.1:{settings.operations_port}"
        self.data_api_url = settings.source_api_base_url or self._url(settings.data_api_port)
        self._local_mlflow = settings.up_start_mlflow_ui and _is_database_uri(
            settings.mlflow_tracking_uri
        )
        self.mlflow_url = (
            self._url(settings.mlflow_port) if self._local_mlflow else settings.mlflow_url
        )
        self._start_ui = settings.up_start_ui and ui_available
        # What this process's own clients (the reload call) must use, as the children do.
        self.settings = settings.model_copy(
            update={"inference_api_url": self.inference_url, "mlflow_url": self.mlflow_url}
        )
        self._servers: list[BackgroundServer] = []
        self._services: list[Service] = []
        self._runner: JobRunner | None = None
        self._scheduler: EmbeddedScheduler | None = None
        self._phase = "starting"
        self._stop = threading.Event()
        self._hurry = threading.Event()

    def _url(self, port: int) -> str:
        return f"http://{self._client_host}:{port}"

    def run(self) -> None:
        """Start everything, block until a signal, stop everything. Raises StartupError."""
        handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        previous = {signum: signal.signal(signum, self._on_signal) for signum in handled}
        try:
            self._start()
            self._phase = "running"
            self._print_banner()
            self._stop.wait()
        except KeyboardInterrupt:
            log.info("interrupted while starting")
        finally:
            self._phase = "stopping"
            self._shutdown()
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._phase == "starting":
            self._phase = "stopping"
            self._stop.set()
            raise KeyboardInterrupt
        if not self._stop.is_set():
            log.info("%s received: stopping", signal.Signals(signum).name)
            self._stop.set()
        elif not self._hurry.is_set():
            log.warning("%s received again: stopping running jobs now", signal.Signals(signum).name)
            self._hurry.set()

    def _start(self) -> None:
        settings = self.settings
        ports = {"inference_port": settings.inference_port}
        if not settings.source_api_base_url:
            ports["data_api_port"] = settings.data_api_port
        if self._local_mlflow:
            ports["mlflow_port"] = settings.mlflow_port
        if self._start_ui:
            ports["ui_port"] = settings.ui_port
        check_ports_free(settings.up_host, ports)
        check_ports_free("127.0.0.1", {"operations_port": settings.operations_port})
        prepare_stores(settings)

        if not settings.source_api_base_url:
            from forestops.source.server import serve_builtin

            self._serve(serve_builtin(builtin_source_settings(settings)))
        env = self._child_env()
        if self._local_mlflow:
            self._spawn(self._mlflow_ui(env))
        if self._start_ui:
            argv = [sys.executable, "-c", "from forestops.cli import app; app()", "ui"]
            self._spawn(Service("web-ui", argv, env))

        from forestops.serving.app import create_app
        from forestops.serving.connections import uvicorn_options

        # the same connection limits as `forestops serve` (header/body timeouts, concurrency)
        self._serve(
            BackgroundServer(
                create_app(settings),
                settings.up_host,
                settings.inference_port,
                **uvicorn_options(settings),
            )
        )
        from forestops.operations.app import create_app as operations_app

        # loopback only, whatever UP_HOST says: the UI beside it is its only client
        self._serve(
            BackgroundServer(operations_app(settings, env), "127.0.0.1", settings.operations_port)
        )
        self._runner = JobRunner(env, logging.getLogger().getEffectiveLevel())
        self._scheduler = EmbeddedScheduler(
            settings, self._runner, self._has_champion, self._reload
        )
        for service in self._services:
            self._scheduler.every(SERVICE_WATCH_S, service.watch, f"watch-{service.name}")
        self._scheduler.start()

    def _serve(self, server: BackgroundServer) -> None:
        self._servers.append(server)
        server.start()

    def _spawn(self, service: Service) -> None:
        self._services.append(service)
        service.start()

    def _child_env(self) -> dict[str, str]:
        """What every child must agree on with this process, whatever its cwd or `.env` says."""
        settings = self.settings
        source = {}
        if not settings.source_api_base_url:
            builtin = builtin_source_settings(settings)
            source = {
                "MIN_UPDATE_TIME_S": str(builtin.min_update_time_s),
                "HARVEST_MIN_INTERVAL_S": str(builtin.harvest_min_interval_s),
            }
        return {
            **source,
            "PYTHONUNBUFFERED": "1",
            "FORESTOPS_HOME": str(settings.forestops_home),
            "DATABASE_URL": settings.database_url,
            "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
            "SOURCE_API_BASE_URL": self.data_api_url,
            "INFERENCE_API_URL": self.inference_url,
            "OPERATIONS_API_URL": self.operations_url,
            "MLFLOW_URL": self.mlflow_url,
            "UI_HOST": settings.up_host,
            "UI_PORT": str(settings.ui_port),
        }

    def _mlflow_ui(self, env: dict[str, str]) -> Service:
        settings = self.settings
        argv = [sys.executable, "-m", "mlflow", "server"]
        argv += ["--backend-store-uri", settings.mlflow_tracking_uri]
        argv += ["--default-artifact-root", str(settings.mlflow_artifacts_dir)]
        argv += ["--host", settings.up_host, "--port", str(settings.mlflow_port), "--workers", "1"]
        # The job runner (MLflow's GenAI jobs) is not used here and costs a process and memory.
        env = {**env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        return Service("mlflow-ui", argv, env)

    def _has_champion(self) -> bool:
        from forestops.modeling.tracking import resolve_serving_model

        return resolve_serving_model(self.settings) is not None

    def _reload(self) -> None:
        """Serve the new champion now rather than at the service's next poll."""
        from forestops.pipeline.notify_inference import ReloadRefused, request_reload

        try:
            request_reload(
                self.settings.model_copy(update={"inference_api_url": self.inference_url})
            )
        except ReloadRefused as error:  # logged; the old model keeps serving, the ticks go on
            log.error("%s", error)

    def _print_banner(self) -> None:
        settings = self.settings
        window = builtin_source_settings(settings).min_update_time_s
        source = (
            "" if settings.source_api_base_url else f"  (built-in, next batch after {window:g} s)"
        )
        lines = [
            "forestops is up; Ctrl-C stops everything",
            f"  data API       {self.data_api_url}{source}",
            f"  inference API  {self.inference_url}/docs",
            f"  operations API {self.operations_url}/docs"
            + ("" if settings.admin_api_key else "  (actions disabled: ADMIN_API_KEY unset)"),
        ]
        if self._start_ui:
            lines.append(f"  web UI         {self._url(settings.ui_port)}")
        if self._local_mlflow or not _is_database_uri(settings.mlflow_tracking_uri):
            lines.append(f"  MLflow UI      {self.mlflow_url}")
        lines.append(
            f"  jobs           ingest every {settings.ingest_interval_s:g} s (first now"
            f"{', harvesting each batch' if settings.ingest_harvest else ''}), "
            f"train every {settings.train_interval_s:g} s (first once enough rows)"
        )
        print("\n".join(lines), flush=True)

    def _shutdown(self) -> None:
        log.info("stopping")
        if self._scheduler is not None:
            self._scheduler.pause()
        for service in self._services:
            service.terminate()
        if self._runner is not None:
            self._runner.stop(self.settings.shutdown_grace_s, self._hurry)
        if self._scheduler is not None:
            self._scheduler.shutdown()
        for service in self._services:
            service.stop()
        for server in reversed(self._servers):
            server.stop()
        log.info("stopped")
