from django.db import migrations

from apps.tenancy.operations import EnableRowLevelSecurity


class Migration(migrations.Migration):
    dependencies = [("approvals", "0001_initial"), ("tenancy", "0003_row_level_security")]

    operations = [EnableRowLevelSecurity(name) for name in ("Proposal", "Approval", "OutboxMessage")]
