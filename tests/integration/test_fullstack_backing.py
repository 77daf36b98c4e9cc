"""`make fullstack`'s databases: each compose database service becomes a fresh database of the
run on the loopback server of its kind, its compose URLs point there, and it is gone after."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from forestops.fullstack.backing import URL, provision

pytestmark = [pytest.mark.postgres, pytest.mark.mariadb]

COMPOSE_PW = "from-deploy-env"  # the compose URLs' own; the loopback servers need none
COMPOSE_URLS = {
    "app-db": f"postgresql+psycopg://forestops:{COMPOSE_PW}@app-db:5432/forestops",
    "mlflow-db": f"mysql+pymysql://mlflow:{COMPOSE_PW}@mlflow-db:3306/mlflow",
}


def _select_one(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()


def test_each_database_service_gets_a_database_of_the_run_dropped_at_the_end() -> None:
    with provision({}, set(COMPOSE_URLS)) as backing:
        local = {service: URL.sub(backing.rewrite, url) for service, url in COMPOSE_URLS.items()}
        assert local == backing.databases
        assert len({url.rsplit("/", 1)[1] for url in local.values()}) == 2
        for url in local.values():
            assert backing.run_id in url
            _select_one(url)
    for url in local.values():
        with pytest.raises(OperationalError):
            _select_one(url)
