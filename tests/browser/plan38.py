"""A realistic 38-unit plan (a web product's monorepo), recorded as a finished run.

Six levels, 5 to 9 units wide, long unit names, and dependencies that skip
levels: what the graph has to lay out legibly at 1280 x 900. Used by
tests/browser/test_polish.py and by the screenshot docs/graph38.png
(``python -m tests.browser.screenshots``).
"""

from __future__ import annotations

from collections.abc import Sequence

from tests.browser.agents import Attempt
from tests.browser.agents import unit_events as agent_unit_events
from tests.browser.support import FakeRun, Writer

PLAN38: dict[str, Sequence[str]] = {
    # level 0
    "repo-config": [],
    "database-schema": [],
    "design-tokens": [],
    "shared-types": [],
    "ci-pipeline": [],
    # level 1
    "db-migrations": ["database-schema"],
    "orm-models": ["database-schema", "shared-types"],
    "auth-core": ["shared-types", "repo-config"],
    "logging-and-metrics": ["repo-config"],
    "feature-flags": ["repo-config"],
    "ui-primitives": ["design-tokens"],
    "api-client-generator": ["shared-types"],
    "error-catalogue": ["shared-types"],
    # level 2
    "user-accounts": ["orm-models", "auth-core"],
    "organisations-and-teams": ["orm-models", "db-migrations"],
    "billing-customers": ["orm-models", "error-catalogue"],
    "session-management": ["auth-core", "logging-and-metrics"],
    "search-indexer": ["orm-models", "logging-and-metrics"],
    "notification-service": ["feature-flags", "logging-and-metrics"],
    "file-storage": ["db-migrations", "repo-config"],
    "ui-forms": ["ui-primitives"],
    "ui-data-tables": ["ui-primitives", "api-client-generator"],
    # level 3
    "permissions-and-roles": ["user-accounts", "organisations-and-teams"],
    "billing-invoices": ["billing-customers", "file-storage"],
    "billing-subscriptions": ["billing-customers", "feature-flags"],
    "audit-log": ["user-accounts", "logging-and-metrics"],
    "email-templates": ["notification-service", "design-tokens"],
    "webhooks-outbound": ["notification-service", "error-catalogue"],
    "admin-console-shell": ["ui-forms", "ui-data-tables", "session-management"],
    "public-rest-api": ["session-management", "search-indexer", "api-client-generator"],
    # level 4
    "billing-invoice-reconciliation": ["billing-invoices", "billing-subscriptions"],
    "admin-user-management": ["admin-console-shell", "permissions-and-roles", "audit-log"],
    "graphql-gateway": ["public-rest-api", "permissions-and-roles"],
    "usage-metering": ["billing-subscriptions", "webhooks-outbound", "search-indexer"],
    "integration-test-suite": ["public-rest-api", "ci-pipeline"],
    # level 5
    "customer-portal": ["graphql-gateway", "ui-forms", "email-templates"],
    "admin-billing-dashboard": [
        "admin-user-management",
        "billing-invoice-reconciliation",
        "usage-metering",
    ],
    "end-to-end-release-checks": ["integration-test-suite", "graphql-gateway", "ci-pipeline"],
}

FAILS = "billing-invoice-reconciliation"  # its second task fails three times
BLOCKED = "admin-billing-dashboard"  # so this one never starts


def attempts(n: int, *, fail: bool) -> list[Attempt]:
    cost = round(0.05 + (n % 11) * 0.031, 4)
    good = Attempt(input_tokens=14_000 + n * 977, output_tokens=1_100 + n * 41, cost_usd=cost)
    if fail:
        return [
            Attempt(passed=False, cost_usd=0.19, validation_output="2 failed") for _ in range(3)
        ]
    return [Attempt(passed=False, cost_usd=0.11), good] if n % 7 == 3 else [good]


def record_plan38(writer: Writer, run_id: str, repo: str) -> FakeRun:
    """The plan run to its end: 36 units completed, one failed, one blocked by it."""
    run = FakeRun(writer, run_id, repo, units=dict(PLAN38), tasks=3).start()
    for n, unit in enumerate(PLAN38):
        if unit == BLOCKED:
            run.send(
                [run.event("unit.blocked", unit, blocked_by=[FAILS], depends_on=list(PLAN38[unit]))]
            )
            continue
        count = 2 + n % 4
        tasks = {
            t: (
                f"{unit.replace('-', ' ').capitalize()} part {t}",
                attempts(n + t, fail=unit == FAILS and t == 2),
            )
            for t in range(1, count + 1)
        }
        run.send(agent_unit_events(run, unit, tasks))
    run.emit("orch.completed", completed=36, failed=1, blocked=1)
    run.complete("failed", completed_units=36, failed_units=1, blocked_units=1)
    return run
