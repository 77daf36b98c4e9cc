"""The `forestops` command line: every entry point is a thin call into the package.

Heavy imports (mlflow, sklearn, uvicorn) happen inside the commands, so `forestops --help`
stays instant.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

from forestops import config
from forestops.logs import configure_logging

T = TypeVar("T")
app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
data_app = typer.Typer(no_args_is_help=True, help="The data set.")
app.add_typer(db_app, name="db")
app.add_typer(data_app, name="data")
model_app = typer.Typer(no_args_is_help=True, help="Registered model versions and the champion.")
app.add_typer(model_app, name="model")


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
    configure_logging(logging.DEBUG if verbose else logging.INFO)


def get_settings(**overrides: object) -> config.Settings:
    """The settings, or a bad one named in one line on stderr (exit 2), never a traceback."""
    from pydantic import ValidationError

    try:
        return config.get_settings(**overrides)
    except ValidationError as error:
        typer.echo(f"forestops: {config.describe_invalid(error)}", err=True)
        raise typer.Exit(2) from None


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head")) -> None:
    """Apply the Alembic migrations to DATABASE_URL (idempotent)."""
    from forestops.store.database import upgrade

    settings = get_settings()
    upgrade(settings.database_url, revision)
    typer.echo(f"database at {revision}: {settings.database_url}")


@db_app.command("roles")
def db_roles() -> None:
    """Create or update the services' PostgreSQL logins (idempotent; rotates their passwords).

    The user and password of UI_DATABASE_URL become a read-only login, those of
    INFERENCE_DATABASE_URL a login that may only add to prediction_log; connects with
    DATABASE_URL (the owner, after `forestops db upgrade`). Passwords come only from these
    settings (environment or .env), never from the command line: the full stack's `app-db-roles`
    job.
    """
    from forestops.store.roles import RolesError, ensure_logins

    settings = get_settings()
    given = {
        "reader": ("UI_DATABASE_URL", settings.ui_database_url),
        "inference": ("INFERENCE_DATABASE_URL", settings.inference_database_url),
    }
    missing = [name for name, url in given.values() if not url]
    if missing:
        typer.echo(f"db roles: set {', '.join(missing)}", err=True)
        raise typer.Exit(2)
    logins = {kind: url for kind, (_, url) in given.items() if url}
    try:
        done = ensure_logins(settings.database_url, logins)
    except RolesError as error:
        typer.echo(f"db roles: {error}", err=True)
        raise typer.Exit(1) from None
    for line in done:
        typer.echo(f"db roles: {line}")


# --- data: dataset, data API, ingestion (foundation) ------------------------------------------


@data_app.command("fetch")
def data_fetch() -> None:
    """Materialise the data set (FORESTOPS_DATASET, or UCI Covertype downloaded once) and
    cache its parsed copy in FORESTOPS_HOME."""
    from forestops.source.dataset import DatasetError, load_dataset

    try:
        frame = load_dataset(get_settings())
    except DatasetError as error:
        typer.echo(f"data fetch failed: {error}", err=True)
        raise typer.Exit(1) from None
    classes = frame["cover_type"].value_counts().sort_index()
    balance = ", ".join(f"{label}: {count:,}" for label, count in classes.items())
    typer.echo(f"{len(frame):,} rows (cover_type {balance})")


@app.command("data-api")
def data_api(
    port: int | None = typer.Option(None, help="Default: DATA_API_PORT (8081)."),
    host: str = typer.Option("127.0.0.1", help="0.0.0.0 to serve containers or other machines."),
    min_update_time: float | None = typer.Option(
        None, min=0, help="Seconds a batch stays current (default MIN_UPDATE_TIME_S: 300)."
    ),
    sample_fraction: float | None = typer.Option(
        None,
        min=0,
        max=1,
        help="Share of the batch per call (default SAMPLE_FRACTION: 0.1; default mode only).",
    ),
    fidelity: str | None = typer.Option(
        None,
        metavar="default|course",
        help="course: the course's server answer for answer (every batch of group g samples the "
        "same tenth rows[g*B:(g+1)*B], counter -1 then 1..10, batch 10 for one call, group 10 "
        "always 500, state in timestamps.json). default: ten disjoint batches covering every "
        "row, each served for its whole window, every group served. Default: DATA_API_FIDELITY.",
    ),
) -> None:
    """Serve the course-compatible batch data API over the data set (state in FORESTOPS_HOME)."""
    import uvicorn
    from pydantic import ValidationError

    from forestops.source.dataset import DatasetError
    from forestops.source.server import builtin_app

    overrides = {
        "min_update_time_s": min_update_time,
        "sample_fraction": sample_fraction,
        "data_api_fidelity": fidelity,
    }
    try:
        settings = get_settings(**{key: v for key, v in overrides.items() if v is not None})
        api = builtin_app(settings)
    except (DatasetError, ValidationError, ValueError) as error:
        typer.echo(f"data-api: {' '.join(str(error).split())}", err=True)
        raise typer.Exit(1) from None
    uvicorn.run(api, host=host, port=settings.data_api_port if port is None else port)


@app.command()
def ingest(
    group: int | None = typer.Option(None, min=1, max=10, help="Default: GROUP_NUMBER."),
    replay: int | None = typer.Option(
        None, metavar="BATCH_ID", help="Load an earlier batch again from its archived payload."
    ),
    harvest: bool = typer.Option(
        False,
        "--harvest",
        help="Keep fetching the current batch while calls still bring new rows (HARVEST_* "
        "settings), each sample stored as it comes; prints the batch's estimated coverage.",
    ),
) -> None:
    """Fetch one batch from SOURCE_API_BASE_URL, validate it and store it in one transaction.
    Exit 0 when loaded or when the source says all data was collected."""
    from forestops.pipeline.harvest import HarvestResult, harvest_batch
    from forestops.pipeline.ingest import IngestError, IngestResult, ingest_batch, replay_batch
    from forestops.source.client import SourceError

    if group is not None and replay is not None:
        raise typer.BadParameter("--replay loads a stored payload; it takes no --group")
    if harvest and replay is not None:
        raise typer.BadParameter("--replay loads a stored payload; it harvests nothing")
    settings = get_settings()
    try:
        result: IngestResult | HarvestResult
        if replay is not None:
            result = replay_batch(settings, replay)
        elif harvest:
            result = harvest_batch(settings, group)
        else:
            result = ingest_batch(settings, group)
    except (IngestError, SourceError) as error:
        typer.echo(f"ingest failed: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(result.summary())
    if result.status == "rejected" or (
        isinstance(result, HarvestResult) and result.stop == "rejected"
    ):
        raise typer.Exit(1)


# --- training and the one-shot pipeline ---------------------------------------------------------


@app.command()
def train(
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as one JSON object."),
    force: bool = typer.Option(
        False,
        "--force",
        help="Train even without new data since the last training (audited, notified, and the "
        "inference service reloaded if the gate promotes the new model).",
    ),
    reason: str | None = typer.Option(None, help="Why (recorded with --force)."),
    by: str | None = typer.Option(None, help="Who (recorded with --force); default: user@host."),
) -> None:
    """Train every candidate on all curated rows, track them in MLflow, gate the best into the
    registry; skipped when no curated rows arrived since the last training, unless --force."""
    from mlflow.exceptions import MlflowException

    from forestops.modeling.candidates import CandidateConfigError
    from forestops.pipeline.model_ops import train_on_request

    _quiet_mlflow(as_json)
    try:
        result, action = train_on_request(
            get_settings(), force=force, actor=by or _operator(), reason=reason
        )
    except (CandidateConfigError, MlflowException) as error:
        typer.echo(f"training failed: {error}", err=True)
        raise typer.Exit(1) from None
    payload = result.to_dict() | ({"action": action.to_dict()} if action else {})
    summary = result.summary() + (f"\n{action.reload}" if action and action.reload else "")
    _echo_result(payload, summary, as_json)


@app.command("run")
def run_once(
    batches: int | None = typer.Option(
        None, min=1, help="Stop after N loaded batches (default: until all data is collected)."
    ),
    min_update_time: float | None = typer.Option(
        None, min=0, help="Seconds per batch window of the data API (0: no waiting)."
    ),
    sample_fraction: float | None = typer.Option(
        None, help="Share of each batch per call of the built-in data API, in (0, 1]."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as one JSON object."),
) -> None:
    """Whole pipeline once: start the built-in data API (unless SOURCE_API_BASE_URL is set), ingest
    every batch, train, promote, and print the summary."""
    from mlflow.exceptions import MlflowException

    from forestops.modeling.candidates import CandidateConfigError
    from forestops.pipeline.ingest import IngestError
    from forestops.pipeline.oneshot import run_pipeline
    from forestops.source.client import SourceError

    if sample_fraction is not None and not 0 < sample_fraction <= 1:
        raise typer.BadParameter("must be in (0, 1]", param_hint="--sample-fraction")
    _quiet_mlflow(as_json)
    try:
        result = run_pipeline(
            get_settings(),
            batches=batches,
            min_update_time=min_update_time,
            sample_fraction=sample_fraction,
        )
    except (IngestError, SourceError) as error:
        typer.echo(f"run failed while ingesting: {error}", err=True)
        raise typer.Exit(1) from None
    except (CandidateConfigError, MlflowException) as error:
        typer.echo(f"run failed: {error}", err=True)
        raise typer.Exit(1) from None
    _echo_result(result.to_dict(), result.summary(), as_json)


def _quiet_mlflow(as_json: bool) -> None:
    """With a tracking server MLflow writes a "View run" link to stdout for every run it ends,
    which would break the one JSON object --json promises there."""
    if as_json:
        import os

        os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"


def _echo_result(payload: dict[str, object], summary: str, as_json: bool) -> None:
    import json

    typer.echo(json.dumps(payload, default=str) if as_json else summary)


def _operator() -> str:
    """Who acts, for the audit trail: the login name and the machine."""
    import getpass
    import socket

    return f"{getpass.getuser()}@{socket.gethostname()}"


# --- model versions and the champion ------------------------------------------------------------


@model_app.command("list")
def model_list(
    as_json: bool = typer.Option(False, "--json", help="Print the versions as a JSON array."),
) -> None:
    """Every version of MODEL_NAME, newest first: accuracy on its evaluation rows, which rows,
    the gate's decision, aliases, when it was created, the last operator action on it."""
    import json

    from forestops.pipeline.model_ops import list_versions

    versions = _model_op(list_versions, get_settings())
    if as_json:
        typer.echo(json.dumps([v.to_dict() for v in versions]))
        return
    if not versions:
        typer.echo("no registered versions")
        return
    typer.echo(
        f"{'version':>7}  {'accuracy':>8}  {'decision':<9} {'alias':<10} {'created':<20} evaluation data"
    )
    for v in versions:
        accuracy = "" if v.accuracy is None else f"{v.accuracy:.4f}"
        line = (
            f"{v.version:>7}  {accuracy:>8}  {v.decision:<9} {','.join(v.aliases):<10} "
            f"{v.created:%Y-%m-%d %H:%M:%S}  {v.evaluation}"
        )
        typer.echo(line + (f"  [{v.last_action}]" if v.last_action else ""))


@model_app.command("promote")
def model_promote(
    version: str = typer.Argument(..., help="The registered version to serve."),
    reason: str | None = typer.Option(None, help="Why (kept in the audit trail)."),
    by: str | None = typer.Option(None, help="Who (kept in the audit trail); default: user@host."),
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as one JSON object."),
) -> None:
    """Make VERSION the champion, bypassing the accuracy gate, once it passes a smoke load; the
    champion it replaces is remembered for `rollback`. Exit 1 when refused."""
    from forestops.pipeline.model_ops import promote_version

    outcome = _model_op(
        promote_version, get_settings(), version, actor=by or _operator(), reason=reason
    )
    _echo_result(outcome.to_dict(), outcome.summary(), as_json)
    if not outcome.done:
        raise typer.Exit(1)


@model_app.command("rollback")
def model_rollback(
    reason: str | None = typer.Option(None, help="Why (kept in the audit trail)."),
    by: str | None = typer.Option(None, help="Who (kept in the audit trail); default: user@host."),
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as one JSON object."),
) -> None:
    """Serve the champion the current one replaced again (after a smoke load). Exit 1 when refused."""
    from forestops.pipeline.model_ops import rollback

    outcome = _model_op(rollback, get_settings(), actor=by or _operator(), reason=reason)
    _echo_result(outcome.to_dict(), outcome.summary(), as_json)
    if not outcome.done:
        raise typer.Exit(1)


@model_app.command("prune")
def model_prune() -> None:
    """Delete the model files of candidates older than the newest MODEL_RETENTION_JOBS training
    jobs that no registered version and no serving run uses; their runs, metrics and charts stay.
    Every training job does this when it ends; this does it now."""
    from forestops.pipeline.retention import prune

    deleted = _model_op(prune, get_settings())
    typer.echo(f"deleted {deleted} old candidate model(s)")


def _model_op(operation: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a model operation; a refusal to start or a tracking-server error is one line and exit 1."""
    from mlflow.exceptions import MlflowException

    from forestops.pipeline.model_ops import ModelOpError

    try:
        return operation(*args, **kwargs)
    except (ModelOpError, MlflowException) as error:
        typer.echo(f"model: {error}", err=True)
        raise typer.Exit(1) from None


# --- backup and restore -----------------------------------------------------------------------

_MLFLOW_BACKEND = typer.Option(
    None,
    "--mlflow-backend",
    envvar="MLFLOW_BACKEND_STORE_URI",
    help="MLflow's database (the tracking server's --backend-store-uri); default: the embedded "
    "sqlite store (MLFLOW_TRACKING_URI).",
)
_MLFLOW_ARTIFACTS = typer.Option(
    None,
    "--mlflow-artifacts",
    envvar="MLFLOW_ARTIFACTS_DESTINATION",
    help="MLflow's artifact root: a folder or s3://bucket/prefix (the server's "
    "--artifacts-destination); default: FORESTOPS_HOME/mlruns.",
)


@app.command()
def backup(
    folder: str = typer.Argument(..., help="Where to write the backup (a new folder)."),
    mlflow_backend: str | None = _MLFLOW_BACKEND,
    mlflow_artifacts: str | None = _MLFLOW_ARTIFACTS,
) -> None:
    """Back up the app database, MLflow's database and its artifacts into FOLDER."""
    from forestops.pipeline.backup import backup as make_backup

    manifest = _backup_op(make_backup, mlflow_backend, mlflow_artifacts, Path(folder))
    rows = sum(manifest["app"]["rows"].values()) + sum(manifest["mlflow_store"]["rows"].values())
    typer.echo(
        f"backup in {folder}: {rows:,} rows, {manifest['artifacts']['files']:,} artifact files"
    )


@app.command()
def restore(
    folder: str = typer.Argument(..., help="A folder written by `forestops backup`."),
    mlflow_backend: str | None = _MLFLOW_BACKEND,
    mlflow_artifacts: str | None = _MLFLOW_ARTIFACTS,
) -> None:
    """Restore a backup into FRESH stores (DATABASE_URL, MLflow's database and artifact root)."""
    from forestops.pipeline.backup import restore as load_backup

    manifest = _backup_op(load_backup, mlflow_backend, mlflow_artifacts, Path(folder))
    typer.echo(f"restored the backup of {manifest['created_at']} from {folder}")


def _backup_op(
    operation: Callable[..., dict[str, Any]],
    mlflow_backend: str | None,
    mlflow_artifacts: str | None,
    folder: Path,
) -> dict[str, Any]:
    from forestops.pipeline.backup import BackupError, Stores

    try:
        stores = Stores.of(get_settings(), mlflow_backend, mlflow_artifacts)
        return operation(stores, folder)
    except BackupError as error:
        typer.echo(f"{operation.__name__}: {error}", err=True)
        raise typer.Exit(1) from None


# --- inference service --------------------------------------------------------------------------


@app.command("tracking-accounts")
def tracking_accounts() -> None:
    """Create or update the tracking server's `trainer` and `reader` accounts (basic auth).

    Reads MLFLOW_TRACKING_URI, the admin's MLFLOW_TRACKING_USERNAME/PASSWORD and
    MLFLOW_TRAINER_PASSWORD / MLFLOW_READER_PASSWORD: the full stack's `mlflow-users` job.
    """
    from forestops.modeling.tracking_accounts import main

    raise typer.Exit(main())


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind (0.0.0.0 in a container)."),
    port: int = typer.Option(8000, help="TCP port."),
) -> None:
    """Serve the champion over HTTP (/predict, /health, /metadata, /reload, /metrics)."""
    import uvicorn

    from forestops.serving.allocator import cap_malloc_arenas
    from forestops.serving.app import create_app
    from forestops.serving.connections import uvicorn_options

    cap_malloc_arenas()  # before any thread: model swaps under load otherwise grow the heap
    settings = get_settings()
    settings.ensure_home()
    if settings.prediction_log_enabled and settings.database_url.startswith("sqlite"):
        from forestops.store.database import upgrade

        upgrade(settings.database_url)  # embedded: no migration job creates prediction_log
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        workers=1,
        access_log=False,
        **uvicorn_options(settings),  # timeouts, connection limit: serving/connections.py
    )


@app.command("operations-api")
def operations_api(
    host: str = typer.Option("127.0.0.1", help="Interface to bind (0.0.0.0 in a container)."),
    port: int | None = typer.Option(None, help="TCP port (default OPERATIONS_PORT, 8090)."),
) -> None:
    """Serve the operator's actions over HTTP for the UI: promote, roll back, train now (each
    needs ADMIN_API_KEY as `Authorization: Bearer`), versions and the audit trail."""
    import uvicorn

    from forestops.operations.app import create_app

    settings = get_settings()
    settings.ensure_home()
    uvicorn.run(
        create_app(settings),
        host=host,
        port=settings.operations_port if port is None else port,
        workers=1,
        access_log=False,
    )


# --- embedded stack, UI, monitoring -------------------------------------------------------------


@app.command()
def monitor(
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object."),
) -> None:
    """Compare recent served inputs and new batches with the champion's training data (drift,
    prediction shift, live accuracy); store the report, notify on an alert. Exit code 3 on an
    alert, so a cron job or CI step can act on it."""
    from mlflow.exceptions import MlflowException

    from forestops.pipeline.monitor import monitor as run_monitor

    try:
        report = run_monitor(get_settings())
    except MlflowException as error:
        typer.echo(f"monitor failed: {error}", err=True)
        raise typer.Exit(1) from None
    _echo_result(report.to_dict(), report.summary(), as_json)
    if report.alert:
        raise typer.Exit(3)


@app.command()
def up(ctx: typer.Context) -> None:
    """The whole platform on this machine: data API, ingestion and training jobs, inference
    service, web UI and MLflow UI, in one process tree. Ctrl-C stops all of it."""
    from forestops.orchestration.stack import EmbeddedStack, StartupError
    from forestops.serving.allocator import cap_malloc_arenas

    cap_malloc_arenas()  # the inference service runs in this process (serving/allocator.py)
    ui_available = ctx.find_root().command.get_command(ctx, "ui") is not None  # type: ignore[attr-defined]
    try:
        EmbeddedStack(get_settings(), ui_available=ui_available).run()
    except StartupError as error:
        typer.echo(f"forestops up: {error}", err=True)
        raise typer.Exit(1) from error
    # Everything has stopped. Spare Ctrl-C the interpreter's final garbage collection over a
    # heap of pandas/MLflow/LightGBM objects: seconds, to free what the OS frees anyway.
    import gc

    gc.freeze()


@app.command()
def ui(
    port: int | None = typer.Option(None, help="Port (default UI_PORT, 8501)."),
    host: str | None = typer.Option(None, help="Bind address (default UI_HOST, 127.0.0.1)."),
) -> None:
    """The web UI (Streamlit): predictions, analytics, model insight, service status."""
    import os

    from forestops.ui.launch import streamlit_command

    settings = get_settings()
    port, host = port or settings.ui_port, host or settings.ui_host
    typer.echo(f"forestops ui: http://{host}:{port}")
    command = streamlit_command(port, host)
    os.execv(command[0], command)  # Streamlit becomes this process: signals reach it directly
