"""Property-based run over the service's own OpenAPI (schemathesis 4): every operation, valid
and invalid inputs, over real HTTP against the real tiny champion, with API keys configured (so
schemathesis also checks that dropping the key is refused). It fails on any 5xx, on a response
that does not match the documented schema, status codes or content types, on valid data refused
and on invalid data accepted.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from pydantic import SecretStr
from schemathesis import APIOperation, Case, CheckFunction
from schemathesis.checks import positive_data_acceptance

from forestops.serving.app import create_app
from forestops.serving.holder import ModelHolder
from forestops.webserver import BackgroundServer
from support.champion import champion_store

ADMIN_KEY = "schemathesis-admin"


@pytest.fixture(scope="module")
def api_schema(
    tmp_path_factory: pytest.TempPathFactory, dataset_path: Path
) -> Iterator[schemathesis.BaseSchema]:
    store = champion_store(
        tmp_path_factory.getbasetemp() / "serving-schemathesis-store", dataset_path
    )
    holder = ModelHolder(store.settings)
    holder.start()
    settings_small = store.settings.model_copy(
        update={
            "max_batch_rows": 20,
            "api_keys": (SecretStr("reader"),),
            "admin_api_key": SecretStr(ADMIN_KEY),
        }
    )
    with BackgroundServer(create_app(settings_small, holder)) as server:
        yield schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    holder.stop()


def _fuzz(operation: APIOperation, excluded: list[CheckFunction]) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
    )
    def check(case: Case) -> None:
        case.call_and_validate(headers={"X-API-Key": ADMIN_KEY}, excluded_checks=excluded)

    check()


def test_service_conforms_to_its_openapi(api_schema: schemathesis.BaseSchema) -> None:
    """Each operation gets its own hypothesis run (schemathesis' pytest plugin does not load on
    pytest 9, so the strategies are driven directly)."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) == 6
    for operation in operations:
        # Any bytes are a schema-valid `file`; whether they are a valid CSV the schema cannot say.
        csv = operation.path == "/predict/csv"
        _fuzz(operation, [positive_data_acceptance] if csv else [])
