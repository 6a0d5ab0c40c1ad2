from django.db import migrations

from apps.tenancy.operations import EnableRowLevelSecurity


class Migration(migrations.Migration):
    dependencies = [("accounts", "0002_initial"), ("tenancy", "0003_row_level_security")]

    operations = [
        EnableRowLevelSecurity("Account"),
        EnableRowLevelSecurity("AccountExternalId"),
    ]
