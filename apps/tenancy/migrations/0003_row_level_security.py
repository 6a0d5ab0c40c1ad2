from django.db import migrations

from apps.tenancy.operations import EnableRowLevelSecurity


class Migration(migrations.Migration):
    dependencies = [("tenancy", "0002_initial")]

    operations = [
        EnableRowLevelSecurity("Membership"),
        EnableRowLevelSecurity("ApiKey"),
    ]
