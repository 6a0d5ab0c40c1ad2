from django.db import migrations

from apps.tenancy.operations import EnableRowLevelSecurity


class Migration(migrations.Migration):
    dependencies = [("billing", "0003_connections")]

    operations = [EnableRowLevelSecurity("ProviderConnection"), EnableRowLevelSecurity("WebhookEvent")]
