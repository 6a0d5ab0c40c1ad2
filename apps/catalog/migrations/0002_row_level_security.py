from django.db import migrations

from apps.tenancy.operations import EnableRowLevelSecurity


class Migration(migrations.Migration):
    dependencies = [("catalog", "0001_initial"), ("tenancy", "0003_row_level_security")]

    operations = [
        EnableRowLevelSecurity(name)
        for name in ("Meter", "Plan", "PlanVersion", "PriceOverride", "Charge", "Tier", "SubscriptionPhase")
    ]
