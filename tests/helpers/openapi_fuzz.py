"""schemathesis over a service's own OpenAPI document, the same way for every service:
a bounded number of generated requests per operation, no 5xx, every status documented.
(schemathesis' pytest plugin does not run under this pytest; its operations and
strategies are used directly, and failures are collected so one report names them all.)"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance


def fuzz_operations(schema: Any, *, max_examples: int, min_operations: int) -> None:
    """Raise AssertionError naming every operation that answered a 5xx or a status its
    document does not list."""
    failures: dict[str, str] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= min_operations, [o.label for o in operations]
    for operation in operations:

        @given(operation.as_strategy())
        @hypothesis_settings(
            max_examples=max_examples,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def run(case: Any) -> None:
            case.call_and_validate(checks=[not_a_server_error, status_code_conformance])

        try:
            run()
        except Exception as exc:  # noqa: BLE001 - collected, reported together below
            failures[operation.label] = str(exc)[:800]
    assert not failures, "\n\n".join(f"{k}: {v}" for k, v in failures.items())
