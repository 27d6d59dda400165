"""Property-based run of schemathesis against the API's own OpenAPI spec, in-process (ASGI).

Every documented operation gets generated requests, valid and invalid; each answer must not
be a server error and must match the response schema documented for its status code. The
run is bounded (few examples, a fixed seed, no example database) to stay a unit test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from churnstream.api.app import create_app
from churnstream.model.scorer import Scorer
from churnstream.settings import Settings, with_overrides

TOKEN = "schemathesis-token"
#: Small, so that generated lists reach the cap and its 422 too.
MAX_BATCH_RECORDS = 5


SETTINGS = with_overrides(
    Settings(), {"api.token": TOKEN, "api.max_batch_records": MAX_BATCH_RECORDS}
)

# The spec does not depend on the model, so it is read from an app without one (nothing is
# loaded: no request ever reaches it). schemathesis' lazy `from_fixture` schemas do not work
# with pytest 9 (they read `node._nodeid`), so the schema is built here and each call goes to
# the `api` fixture's app, which serves the session's real model.
schema = schemathesis.openapi.from_dict(create_app(SETTINGS).openapi())
schema.app = create_app(SETTINGS)  # makes schemathesis call in-process (ASGI)


@pytest.fixture(scope="module")
def api(model_dir: Path) -> Any:
    return create_app(SETTINGS, Scorer.load(model_dir))


@schema.parametrize()
@settings(
    max_examples=25,
    derandomize=True,  # the same cases on every run
    database=None,  # nothing written under .hypothesis/
    deadline=None,  # a shared, busy machine: no per-example time limit
    suppress_health_check=list(HealthCheck),
)
def test_api_matches_its_spec(case: Any, api: Any) -> None:
    case.call_and_validate(
        app=api,
        headers={"Authorization": f"Bearer {TOKEN}"},
        checks=[not_a_server_error, response_schema_conformance],
    )
