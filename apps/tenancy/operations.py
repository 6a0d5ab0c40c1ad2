"""Migration operations that put row-level security on tenant tables (PostgreSQL only).

Every tenant table gets RLS enabled *and forced* (so even the table owner is
subject to it; only a superuser bypasses it, and the app never connects as one),
with two permissive policies:

- ``tenant_isolation``: rows whose ``tenant_id`` equals ``app.tenant_id``, for reads
  and, through ``WITH CHECK``, for writes: an INSERT or UPDATE naming another
  tenant fails;
- ``platform_unscoped``: every row, only while ``app.unscoped`` is ``on`` (set by
  ``unscoped_context`` for operators and maintenance).

A model may also name a user column (``rls_user_column``): its rows are then
readable, never writable, by that user without a tenant in context — how a user
lists their own memberships to pick a tenant.
"""

from __future__ import annotations

from typing import Any

from django.db.migrations.operations.base import Operation

TENANT_SETTING = "NULLIF(current_setting('app.tenant_id', true), '')::bigint"
USER_SETTING = "NULLIF(current_setting('app.user_id', true), '')::bigint"
UNSCOPED_SETTING = "current_setting('app.unscoped', true) = 'on'"


def rls_statements(table: str, user_column: str | None = None) -> list[str]:
    quoted = f'"{table}"'
    statements = [
        f"ALTER TABLE {quoted} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {quoted} FORCE ROW LEVEL SECURITY",
        f"DROP POLICY IF EXISTS tenant_isolation ON {quoted}",
        f"CREATE POLICY tenant_isolation ON {quoted} USING (tenant_id = {TENANT_SETTING})"
        f" WITH CHECK (tenant_id = {TENANT_SETTING})",
        f"DROP POLICY IF EXISTS platform_unscoped ON {quoted}",
        f"CREATE POLICY platform_unscoped ON {quoted} USING ({UNSCOPED_SETTING})"
        f" WITH CHECK ({UNSCOPED_SETTING})",
    ]
    if user_column:
        statements += [
            f"DROP POLICY IF EXISTS own_rows ON {quoted}",
            f'CREATE POLICY own_rows ON {quoted} FOR SELECT USING ("{user_column}" = {USER_SETTING})',
        ]
    return statements


class EnableRowLevelSecurity(Operation):
    """Put the tenant policies on one model's table."""

    reduces_to_sql = True
    reversible = True

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name

    def state_forwards(self, app_label: str, state: Any) -> None:
        pass

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return
        model = to_state.apps.get_model(app_label, self.model_name)
        real = _real_model(app_label, self.model_name)
        user_column = getattr(real, "rls_user_column", None) if real else None
        for statement in rls_statements(model._meta.db_table, user_column):
            schema_editor.execute(statement)

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return
        table = from_state.apps.get_model(app_label, self.model_name)._meta.db_table
        for policy in ("tenant_isolation", "platform_unscoped", "own_rows"):
            schema_editor.execute(f'DROP POLICY IF EXISTS {policy} ON "{table}"')
        schema_editor.execute(f'ALTER TABLE "{table}" NO FORCE ROW LEVEL SECURITY')
        schema_editor.execute(f'ALTER TABLE "{table}" DISABLE ROW LEVEL SECURITY')

    def describe(self) -> str:
        return f"Enable row-level security on {self.model_name}"

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        return (self.__class__.__name__, [self.model_name], {})


def _real_model(app_label: str, model_name: str) -> Any:
    from django.apps import apps

    try:
        return apps.get_model(app_label, model_name)
    except LookupError:
        return None
