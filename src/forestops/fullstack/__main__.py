"""`python -m forestops.fullstack [--env-file FILE] [--run-dir DIR]` (what `make fullstack` runs).

Writes a fresh deploy/.env-style file with `deploy/init-env.sh` (random secrets, a self-signed
certificate) into the run folder, lays `local.DEMO_ENV` and then the caller's --env-file over
it, resolves the compose file with it, provisions the stateful services on this machine, starts
every service as a local process and prints one JSON line of endpoints on stdout (logs go to
stderr). Runs until Ctrl-C or SIGTERM, then stops everything and drops what it provisioned.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from forestops.fullstack import local
from forestops.fullstack.backing import provision
from forestops.fullstack.compose import generated_env, interpolate, load_compose, read_env_file
from forestops.fullstack.plan import Plan, UnknownImage, build
from forestops.fullstack.runner import (
    Runner,
    StackFailed,
    WebhookReceiver,
    emit,
    install_signal_handlers,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make fullstack", description=__doc__)
    parser.add_argument(
        "--env-file", type=Path, help="KEY=VALUE lines laid over the generated .env"
    )
    parser.add_argument("--run-dir", type=Path, help="state folder (default: a new temporary one)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    run_dir = (args.run_dir or Path(tempfile.mkdtemp(prefix="forestops-fullstack-"))).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    receiver = WebhookReceiver(run_dir / "webhook.jsonl")
    env = {
        **generated_env(run_dir),
        **local.DEMO_ENV,
        "TLS_DIR": str(run_dir / "tls"),
        "NOTIFY_WEBHOOK_URL": receiver.url,
        **(read_env_file(args.env_file) if args.env_file else {}),
    }
    compose = interpolate(load_compose(), env)
    try:
        with provision(env, set(compose["services"])) as backing:
            plan = build(compose, backing, run_dir)
            runner = Runner(plan, compose, backing, run_dir)
            install_signal_handlers(runner)
            try:
                runner.start()
                emit(_endpoints(plan, env, backing, run_dir, receiver))
                runner.supervise()
            finally:
                runner.stop()
    except (StackFailed, UnknownImage) as failure:
        logging.getLogger("forestops.fullstack").error("%s", failure)
        return 1
    finally:
        receiver.close()
        if args.run_dir is None:
            shutil.rmtree(run_dir, ignore_errors=True)
    return 0


def _endpoints(
    plan: Plan, env: dict[str, str], backing: Any, run_dir: Path, receiver: WebhookReceiver
) -> dict[str, Any]:
    def url(service: str, port: int, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{plan.ports[service][0][port]}"

    return {
        "airflow_url": url("airflow-apiserver", 8080),
        "airflow_user": env.get("AIRFLOW_ADMIN_USER") or "admin",
        "airflow_password": env["AIRFLOW_ADMIN_PASSWORD"],
        # the read-only account in the URL, so any HTTP or MLflow client reads the registry
        # as it is (basic auth); the admin's login is for the MLflow UI in a browser
        "mlflow_url": url("mlflow", 5000).replace(
            "://", f"://reader:{env['MLFLOW_READER_PASSWORD']}@", 1
        ),
        "mlflow_user": env.get("MLFLOW_ADMIN_USER") or "admin",
        "mlflow_password": env["MLFLOW_ADMIN_PASSWORD"],
        "inference_url": url("lb", 8000),
        "inference_tls_url": url("lb", 8443, "https"),
        "tls_certificate": str(run_dir / "tls" / "cert.pem"),
        "replica_urls": [f"http://127.0.0.1:{ports[8000]}" for ports in plan.ports["inference"]],
        "ui_url": url("streamlit", 8501),
        "operations_url": url("operations", 8090),
        "data_api_url": url("data-api", 8081),
        "webhook_log": str(receiver.path),
        "api_key": env["API_KEYS"].split(",")[0],
        "admin_api_key": env["ADMIN_API_KEY"],
        "database_url": backing.databases["app-db"],
        "airflow_database_url": backing.databases["airflow-db"],
        "s3_endpoint_url": backing.s3_endpoint_url,
        "buckets": backing.buckets,
        "run_dir": str(run_dir),
    }


if __name__ == "__main__":
    sys.exit(main())
