"""Indexes for the audit screen: keyset pages, the actor filter, and (PostgreSQL) action prefixes."""

from django.conf import settings
from django.db import migrations, models

# Under row-level security PostgreSQL only lets leakproof operators use an index before the
# policy has filtered the rows, and LIKE is not leakproof. A prefix is therefore also asked as
# a byte-wise range (COLLATE "C", leakproof comparisons; apps.audit.selectors), served by this.
ACTION_INDEX = 'CREATE INDEX IF NOT EXISTS audit_tenant_action_c_idx ON audit_auditevent (tenant_id, (action COLLATE "C"))'


def add_action_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(ACTION_INDEX)


def drop_action_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS audit_tenant_action_c_idx")


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0003_append_only"),
        ("tenancy", "0005_tenant_single_approval_limit"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveIndex(model_name="auditevent", name="audit_tenant_time_idx"),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["tenant", "-created_at", "-id"], name="audit_tenant_time_id_idx"),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["tenant", "actor_label"], name="audit_tenant_actor_idx"),
        ),
        migrations.RunPython(add_action_index, drop_action_index, elidable=False),
    ]
