"""The discrepancy queue over 100,000 findings: indexes for its sorts and filters, and a cheaper RLS check.

The row-level security policies compare each row with ``current_setting(...)``, a function that
PostgreSQL calls again for every row a scan reads. Wrapped in a scalar sub-select it is read once
per query (an InitPlan), the same value for every row: the same wall, at about a third of the cost
of counting the queue (measured by scripts/bench_ui.py).
"""

import django.db.models.functions.math
from django.db import migrations, models

from apps.tenancy.operations import TENANT_SETTING, UNSCOPED_SETTING

QUEUE_ACTIVE = ("open", "assigned", "escalated")  # apps.reconciliation.models.QUEUE_ACTIVE
TABLE = '"reconciliation_discrepancy"'


def _policies(tenant: str, unscoped: str) -> list[str]:
    return [
        f"ALTER POLICY tenant_isolation ON {TABLE} USING (tenant_id = {tenant}) WITH CHECK (tenant_id = {tenant})",
        f"ALTER POLICY platform_unscoped ON {TABLE} USING ({unscoped}) WITH CHECK ({unscoped})",
    ]


def read_settings_once(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in _policies(f"(SELECT {TENANT_SETTING})", f"(SELECT {UNSCOPED_SETTING})"):
            schema_editor.execute(statement)


def read_settings_per_row(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in _policies(TENANT_SETTING, UNSCOPED_SETTING):
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("reconciliation", "0005_reconciliation_schedule")]

    operations = [
        migrations.AddIndex(
            model_name="discrepancy",
            index=models.Index(
                fields=["tenant", "-updated_at", "-id", "status"], name="discrepancy_recent_idx"
            ),
        ),
        migrations.AddIndex(
            model_name="discrepancy",
            index=models.Index(
                condition=models.Q(("status__in", QUEUE_ACTIVE)),
                fields=["tenant", "classification", "-updated_at", "-id"],
                name="discrepancy_active_class_idx",
            ),
        ),
        migrations.AddIndex(
            model_name="discrepancy",
            index=models.Index(
                models.F("tenant"),
                models.OrderBy(django.db.models.functions.math.Abs("amount"), descending=True),
                models.OrderBy(models.F("id"), descending=True),
                condition=models.Q(("status__in", QUEUE_ACTIVE)),
                name="discrepancy_active_amount_idx",
            ),
        ),
        migrations.AddIndex(
            model_name="discrepancy",
            index=models.Index(
                condition=models.Q(("owner__isnull", True), ("status__in", QUEUE_ACTIVE)),
                fields=["tenant", "owner_role"],
                name="discrepancy_unassigned_idx",
            ),
        ),
        migrations.RunPython(read_settings_once, read_settings_per_row, elidable=False),
    ]
