from django.contrib import admin

from apps.accounts.models import Account, AccountExternalId
from apps.tenancy.admin import TenantModelAdmin


class ExternalIdInline(admin.TabularInline):
    model = AccountExternalId
    extra = 0
    fields = ("provider", "external_id")

    def get_queryset(self, request):
        return AccountExternalId.unscoped_objects.all()


@admin.register(Account)
class AccountAdmin(TenantModelAdmin):
    list_display = ("name", "key", "segment", "timezone", "csm_owner")
    list_filter = ("tenant", "segment")
    search_fields = ("name", "key", "external_ids__external_id")
    raw_id_fields = ("csm_owner",)
    inlines = [ExternalIdInline]
