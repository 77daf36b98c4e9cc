"""`forestops tracking-accounts`: the tracking server's accounts, from the environment.

The full stack runs MLflow's basic-auth app, whose default permission is READ: every account can
read, an account can write only what it created or was granted. Two accounts besides the admin:
`trainer` (training, the gate and the monitor: the Airflow worker; it creates the experiment and
the registered model, so it owns them) and `reader` (the inference service and the UI). So a
stolen inference or UI credential cannot register a version or move the champion alias.

Run as a one-shot job (compose `mlflow-users`) with the admin's credentials in
MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD and the two passwords in
MLFLOW_TRAINER_PASSWORD / MLFLOW_READER_PASSWORD. Idempotent: an existing account gets the
password it is given (rotate by changing .env and running the job again).
"""

from __future__ import annotations

import os
import sys

from mlflow.exceptions import RestException
from mlflow.server import get_app_client

ACCOUNTS = {"trainer": "MLFLOW_TRAINER_PASSWORD", "reader": "MLFLOW_READER_PASSWORD"}


def ensure_accounts(tracking_uri: str, passwords: dict[str, str]) -> list[str]:
    """Create or update each account; returns what was done, one line per account."""
    client = get_app_client("basic-auth", tracking_uri=tracking_uri)
    done: list[str] = []
    for username, password in passwords.items():
        try:
            client.get_user(username)
        except RestException as missing:
            if missing.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            client.create_user(username, password)
            done.append(f"created {username}")
            continue
        client.update_user_password(username, password)
        done.append(f"updated {username}")
    return done


def main() -> int:
    missing = [
        name for name in ("MLFLOW_TRACKING_URI", *ACCOUNTS.values()) if not os.environ.get(name)
    ]
    if missing:
        print(f"tracking_accounts: set {', '.join(missing)}", file=sys.stderr)
        return 2
    passwords = {user: os.environ[variable] for user, variable in ACCOUNTS.items()}
    for line in ensure_accounts(os.environ["MLFLOW_TRACKING_URI"], passwords):
        print(f"tracking accounts: {line}")
    return 0
