"""The API against its own OpenAPI description, fuzzed by schemathesis.

Every operation gets generated requests (valid and invalid) with an admin token; no answer
may be a 5xx, and every answer must match the schema's status codes, content types and
bodies.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

from canarino import users
from canarino.web.app import create_app
from canarino.web.testing import make_web_workspace

pytestmark = pytest.mark.slow

EXAMPLES = 8

CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_headers_conformance,
]


@pytest.fixture(scope="module")
def token_and_app(
    tmp_path_factory: pytest.TempPathFactory, cheap_hashes: None
) -> Iterator[tuple[str, Any]]:
    """Its own workspace: the fuzzer adds users, recipients and shares as it goes."""
    fx = make_web_workspace(Path(tmp_path_factory.mktemp("schema")), customers=60)
    secret, _ = users.add_token(fx.ws, "schemathesis", "admin")
    # A relay nobody listens on: generated sending runs fail fast instead of reaching out.
    fx.ws.settings.smtp_relay = "127.0.0.1:9"
    yield secret, create_app(fx.ws)
    fx.ws.close()


@pytest.fixture(scope="module")
def api_schema(token_and_app: tuple[str, Any]) -> Any:
    """The schema as the app serves it to a token holder."""
    secret, app = token_and_app
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return schemathesis.openapi.from_asgi(
            "/api/openapi.json", app, headers={"Authorization": f"Bearer {secret}"}
        )


def _fuzz(operation: Any, mode: Any, headers: dict[str, str], failures: list[str]) -> None:
    """Run generated cases of one operation; collect what went wrong."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    def run(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    try:
        run()
    except Exception as exc:  # every operation runs; failures are reported together
        last = str(exc).strip().splitlines()[-1:] or [type(exc).__name__]
        failures.append(f"{operation.label} [{mode.value}]: {type(exc).__name__}: {last[0]}")


def test_api_answers_match_the_openapi_and_never_fail_with_5xx(
    api_schema: Any, token_and_app: tuple[str, Any]
) -> None:
    secret, _ = token_and_app
    headers = {"Authorization": f"Bearer {secret}"}
    failures: list[str] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) > 25
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(operation, mode, headers, failures)
    assert not failures, "\n\n".join(failures)
