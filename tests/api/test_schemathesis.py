"""Fuzzing the HTTP API from its own OpenAPI schema with schemathesis.

Every operation gets generated requests, valid and invalid, sent with the API key to a
writable service over a private copy of the sample index and the real model. Each
response must have a documented status and a body that matches the schema, never a 5xx.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.config import SchemathesisConfig

from api.app import create_app
from rag.pipeline import Pipeline
from rag.settings import Settings

MIN_CASES = 500
EXAMPLES_PER_OPERATION = 150

# A request can match the schema and still be refused with a documented 422 or 413: a
# blank or over-long question, an upload of an unsupported type, a body over the limit.
# Type mutations cannot be rejected where nothing is typed: in a query string a number or
# `true` sent for an id or a source arrives as the same text, and article records are read
# by the feed parser, which takes a number as an id or URL. There, negative requests are
# still sent (for every other check) but need not be refused.
CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "401", "403", "404", "413", "422"]
            }
        },
        "operations": [
            {
                "include-name": ["GET /ask", "POST /articles"],
                "checks": {"negative_data_rejection": {"enabled": False}},
            }
        ],
    }
)
# The schema does not depend on the index, so it is read from an app without a pipeline
# (no model, no index) at import; the requests go to the `service` fixture's app.
schema = schemathesis.openapi.from_dict(create_app(Settings()).openapi(), config=CONFIG)
OPERATIONS = sum(1 for _ in schema.get_all_operations())


@pytest.fixture(scope="module")
def answered() -> Iterator[Counter[tuple[str, int]]]:
    """Generated requests by operation and response status. A run of the whole module
    must send MIN_CASES of them, and some writes must have succeeded."""
    seen: Counter[tuple[str, int]] = Counter()
    yield seen
    if len({label for label, _ in seen}) == OPERATIONS:  # not a selection (-k, --lf)
        assert seen.total() >= MIN_CASES, f"only {seen.total()} requests: {seen}"
        assert seen["POST /articles", 201] > 0, seen


@pytest.fixture
def service(writable_pipeline: Pipeline, writer_settings: Settings) -> FastAPI:
    """The writable service (RAG_API_KEY set) over a private copy of the sample index."""
    return create_app(writer_settings, writable_pipeline)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    # one service per operation on purpose: its index accumulates the generated writes
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_generated_requests_get_documented_answers(
    case: Case, service: FastAPI, key: dict[str, str], answered: Counter[tuple[str, int]]
) -> None:
    # The schema was read at import, before this service existed: bind it now, for the
    # request and for the checks that send requests of their own (such as `ignored_auth`).
    case.operation.app = case.operation.schema.app = service
    response = case.call_and_validate(headers=key)
    answered[case.operation.label, response.status_code] += 1
