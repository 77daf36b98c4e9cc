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
