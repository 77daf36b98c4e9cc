"""The `forestops` command line: every entry point is a thin call into the package.

Heavy imports (mlflow, sklearn, uvicorn) happen inside the commands, so `forestops --help`
stays instant.
"""

from __future__ import annotations

import logging

import typer

from forestops.config import get_settings
from forestops.logs import configure_logging

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
data_app = typer.Typer(no_args_is_help=True, help="The data set.")
app.add_typer(db_app, name="db")
app.add_typer(data_app, name="data")


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
    configure_logging(logging.DEBUG if verbose else logging.INFO)


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head")) -> None:
    """Apply the Alembic migrations to DATABASE_URL (idempotent)."""
    from forestops.store.database import upgrade

    settings = get_settings()
    upgrade(settings.database_url, revision)
    typer.echo(f"database at {revision}: {settings.database_url}")


# --- data: dataset, data API, ingestion (foundation) ------------------------------------------

# --- training and the one-shot pipeline ---------------------------------------------------------

# --- inference service --------------------------------------------------------------------------

# --- embedded stack, UI, monitoring -------------------------------------------------------------


@app.command()
def up(ctx: typer.Context) -> None:
    """The whole platform on this machine: data API, ingestion and training jobs, inference
    service, web UI and MLflow UI, in one process tree. Ctrl-C stops all of it."""
    from forestops.orchestration.stack import EmbeddedStack, StartupError

    ui_available = ctx.find_root().command.get_command(ctx, "ui") is not None  # type: ignore[attr-defined]
    try:
        EmbeddedStack(get_settings(), ui_available=ui_available).run()
    except StartupError as error:
        typer.echo(f"forestops up: {error}", err=True)
        raise typer.Exit(1) from error


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
