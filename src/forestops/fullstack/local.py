"""Everything `make fullstack` knows that deploy/docker-compose.yml does not say, in one place.

The compose file gives the services, their commands, environment, `depends_on` order and
healthchecks; the harness reads those (see `plan`). What only a container runtime would supply
is decided here: which local program stands in for an image, what the images' `ENV` lines and
volumes become on this machine, which services are replaced by the loopback servers a test
machine already runs, and the defaults that keep a demo stack small.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from forestops.fullstack.compose import ROOT

APP_BIN = Path(sys.executable).parent  # .venv/bin: the app image's /opt/venv/bin
AIRFLOW_BIN = ROOT / ".venv-airflow" / "bin"  # the Airflow image's /opt/venv/bin
NGINX_IMAGE = "nginxinc/nginx-unprivileged"  # the `lb` service's image, without the tag ...
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"  # ... run as Debian's nginx

# Our images' entry points, by image name (`image:` of the service, without the tag).
IMAGE_BIN = {"forestops/app": APP_BIN, "forestops/airflow": AIRFLOW_BIN}

# Stateful services: replaced by what runs on loopback here (PostgreSQL, MariaDB, Redis) and by an
# in-process S3 server (moto) standing in for MinIO; each run gets fresh databases and buckets.
POSTGRES_SERVICES = {"airflow-db", "app-db"}
MARIADB_SERVICES = {"mlflow-db"}
REDIS_SERVICES = {"redis"}
S3_SERVICES = {"minio"}
# One-shot jobs that only make sense inside their images: minio-init's `mc` commands create the
# buckets and the S3 user; here the buckets are created by the harness (moto takes any key).
REPLACED_JOBS = {"minio-init"}
# Profiles started: `offline` (the built-in data API); `monitoring` needs Prometheus and Grafana
# binaries, which are not installed here.
PROFILES = {"offline"}
# Services outside any profile that do not run here, and the settings that stop the others from
# looking for them: Airflow's StatsD client would resolve `statsd-exporter` when it starts.
NOT_RUN = {"statsd-exporter": {"AIRFLOW__METRICS__STATSD_ON": "False"}}
INFERENCE_REPLICAS = 2


@dataclass(frozen=True)
class Backends:
    postgres_admin: str = os.environ.get(
        "FORESTOPS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    mariadb_host: str = "127.0.0.1"
    mariadb_port: int = 3306
    redis_url: str = os.environ.get("FORESTOPS_TEST_REDIS", "redis://127.0.0.1:6379")


def dataset() -> Path:
    """The data API's rows: the shared Covertype file (the image downloads UCI at first start)."""
    configured = os.environ.get("FORESTOPS_DATASET")
    return Path(configured) if configured else ROOT.parent / "shared/data/covertype.csv.gz"


# Values a user would put in deploy/.env, chosen for a stack on one test machine: one candidate
# model (the four of the default list train for minutes on 2 cores), a one-minute batch window
# (a data run never waits five minutes for the next batch), the built-in data API.
# Anything in the caller's --env-file wins.
DEMO_ENV = {
    "COMPOSE_PROFILES": "offline",
    "BIND_ADDRESS": "127.0.0.1",
    "TRAIN_CANDIDATES": "lightgbm",
    "DATA_API_MIN_UPDATE_TIME_S": "60",
    "AIRFLOW_DAGS_PAUSED_AT_CREATION": "False",
}


def image_env(image: str, home: Path, airflow_home: Path) -> dict[str, str]:
    """The images' `ENV` lines (deploy/docker/*/Dockerfile) with this machine's paths."""
    base = {
        "PATH": f"{IMAGE_BIN[image]}:/usr/local/bin:/usr/bin:/bin",
        "PYTHONUNBUFFERED": "1",
        "LANG": "C.UTF-8",
        "HOME": str(home),
    }
    if image == "forestops/airflow":
        return {
            **base,
            "AIRFLOW_HOME": str(airflow_home),
            "FORESTOPS_HOME": str(airflow_home / "forestops"),
            # the image bakes dags/ into /opt/airflow/dags
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        }
    return {**base, "FORESTOPS_HOME": str(home), "FORESTOPS_DATASET": str(dataset())}


# Container-internal ports that would clash between processes on one host: moved to free ports.
AIRFLOW_INTERNAL_PORTS = {
    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": 8974,
    "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": 8793,
    "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": 8794,
}

# The nginx image's own nginx.conf around the template it fills in (conf.d/default.conf).
NGINX_MAIN = """\
worker_processes 1;
pid {run}/nginx.pid;
error_log stderr warn;
daemon off;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {run}/client_body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    include {run}/default.conf;
}}
"""
