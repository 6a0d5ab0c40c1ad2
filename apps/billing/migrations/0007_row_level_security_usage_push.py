from django.db import migrations

from apps.tenancy.operations import EnableRowLevelSecurity


class Migration(migrations.Migration):
    dependencies = [("billing", "0006_usage_push")]

    operations = [EnableRowLevelSecurity("UsagePushSettings"), EnableRowLevelSecurity("UsagePush")]
